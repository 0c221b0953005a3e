#!/usr/bin/env node
// Signals are handled from the first instant: the handlers are installed before the rest of ggufy loads.
import { installSignals } from "../dist/src/cli/signals.js";
installSignals();
const { main } = await import("../dist/src/cli/main.js");
process.exitCode = await main(process.argv.slice(2));
