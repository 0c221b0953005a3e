#!/usr/bin/env node
// Signals are handled from the first instant: the handlers are installed before the rest of ggufy loads.
import { installSignals, finished } from "../dist/src/cli/signals.js";
installSignals();
const { main } = await import("../dist/src/cli/main.js");
const code = await main(process.argv.slice(2));
finished(code);
// Exit here, not by letting the event loop run dry: a natural exit first closes the signal handles
// (the default action is back for SIGINT/SIGTERM/SIGHUP) and then tears down the workers and the
// heap, so a signal in those ~10 ms killed a command that had already finished and written its
// output. process.exit keeps the handlers installed to the end (stdout/stderr writes are
// synchronous on Linux for files, pipes and terminals, so nothing printed is lost).
process.exit(code);
