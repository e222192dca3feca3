#!/usr/bin/env node
/**
 * `npm run bench -- propagate-fleet [--nodes 6] [--small MiB] [--large MiB]`
 *
 * Runs bench/propagate/fleet.ts (fleet time-to-usable and fan-out through the
 * controller, issue 6) with the TypeScript hooks: its controller and agents
 * are started from the sources by test/support/controller/propagation-cluster.ts, as
 * in the integration tests. Root; about three minutes with the defaults.
 * Last stdout line: {"bench":"propagate-fleet", ..., "ok": true|false}.
 */
import { spawn } from "node:child_process";

const child = spawn(
  process.execPath,
  ["--import", "./test/support/register.mjs", "bench/propagate/fleet.ts", ...process.argv.slice(2)],
  { stdio: "inherit" },
);
child.once("exit", (code, signal) => {
  process.exitCode = code ?? (signal ? 129 : 1);
});
