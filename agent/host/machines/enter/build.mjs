#!/usr/bin/env node
/**
 * Compiles protoctl-enter (enter.c), protoctl-spawner (spawner.c) and
 * protoctl-cpin (cpin.c) with the
 * system C compiler. `npm run build` puts them beside the compiled driver (dist/agent/host/machines/enter/); the
 * integration tests' global setup builds them beside the sources when missing or
 * older than their source. Usage: build.mjs [OUT]. Plain JavaScript: runs before or
 * without tsc.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "enter.c");

/** Compiles C source `from` into `out` unless `out` is newer. */
function compile(from, out) {
  try {
    if (statSync(out).mtimeMs >= statSync(from).mtimeMs) return;
  } catch {
    // not built yet
  }
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  execFileSync("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", tmp, from], { stdio: "inherit" });
  execFileSync("mv", ["-f", tmp, out]);
}

/** Builds OUT from enter.c, and protoctl-spawner (spawner.c) and protoctl-cpin (cpin.c) beside it; returns OUT. */
export function buildEnter(out) {
  compile(src, out);
  compile(join(here, "spawner.c"), join(dirname(out), "protoctl-spawner"));
  compile(join(here, "cpin.c"), join(dirname(out), "protoctl-cpin"));
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2] ?? join(here, "../../../../dist/agent/host/machines/enter/protoctl-enter");
  buildEnter(out);
}
