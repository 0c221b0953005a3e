#!/usr/bin/env node
// Signals are handled from the first instant: the handlers are installed before the rest of ggufy loads.
import { installSignals, finished } from "../dist/src/cli/signals.js";
installSignals();
const { main } = await import("../dist/src/cli/main.js");
const code = await main(process.argv.slice(2));
finished(code);
process.exitCode = code;
