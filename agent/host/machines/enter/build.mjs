#!/usr/bin/env node
/**
 * Compiles protoctl-enter (enter.c) with the system C compiler. `npm run build`
 * puts it beside the compiled driver (dist/agent/host/machines/enter/); the
 * integration tests' global setup builds it beside the sources when missing or
 * older than enter.c. Usage: build.mjs [OUT]. Plain JavaScript: runs before or
 * without tsc.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "enter.c");

/** Builds OUT from enter.c unless OUT is newer; returns OUT. */
export function buildEnter(out) {
  try {
    if (statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  } catch {
    // not built yet
  }
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  execFileSync("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", tmp, src], { stdio: "inherit" });
  execFileSync("mv", ["-f", tmp, out]);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2] ?? join(here, "../../../../dist/agent/host/machines/enter/protoctl-enter");
  buildEnter(out);
}
