#!/usr/bin/env node
/**
 * `protoctl`: the single executable for users (CLI), nodes (`protoctl agent`)
 * and controllers (`protoctl controller`). Start-up is kept small on purpose
 * (see bench/cli-startup): only commander and the named command's module load
 * before the command runs; gRPC, YAML and listr2 load when a command uses them.
 */
import { ExitCode } from "./exit-codes.js";
import { main } from "./run.js";

// `protoctl ... | head` closes our stdout early: that is success, not a crash.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const args = process.argv.slice(2);
main(args).then(
  // Daemons (agent, controller, supervise) return from their action only once stopped.
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`protoctl: ${String(err)}\n`);
    process.exit(ExitCode.FAILURE);
  },
);
