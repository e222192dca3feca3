#!/usr/bin/env node
/**
 * `npm run bench -- propagate-fleet [--nodes 6] [--small MiB] [--large MiB]`
 *
 * Runs bench/propagate/fleet.ts (fleet time-to-usable and fan-out through the
 * controller, issue 6) with the TypeScript hooks: its controller and agents
 * are started from the sources by test/support/controller/propagation-cluster.ts, as
 * in the integration tests. Root; about three minutes with the defaults.
 * The agents' C helpers (protoctl-enter, -spawner, -cpin) are built beside
 * the sources first when missing or stale, as the integration tests' setup
 * does: without them every exec fails (ENTER_HELPER_MISSING).
 * Last stdout line: {"bench":"propagate-fleet", ..., "ok": true|false}.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { buildEnter } from "../../agent/host/machines/enter/build.mjs";

buildEnter(fileURLToPath(new URL("../../agent/host/machines/enter/protoctl-enter", import.meta.url)));

const child = spawn(
  process.execPath,
  ["--import", "./test/support/register.mjs", "bench/propagate/fleet.ts", ...process.argv.slice(2)],
  { stdio: "inherit" },
);
child.once("exit", (code, signal) => {
  process.exitCode = code ?? (signal ? 129 : 1);
});
