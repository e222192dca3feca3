#!/usr/bin/env node
/**
 * `protoctl`: the single executable for users (CLI), nodes (`protoctl agent`)
 * and controllers (`protoctl controller`).
 *
 * Start-up is what users wait for (bench/cli-startup, bench/cli-exec), so
 * this entry loads almost nothing: `protoctl version`,
 * `protoctl env exec NAME -- CMD`, `env create NAME --base B` and
 * `env rm NAME` (no other flags) are served by cli/fast/ with
 * Node's own modules and hand-encoded messages; everything else, and any
 * case the fast path does not know (another flag, no usable context),
 * loads the full commander CLI (cli/full.ts). Both give the same output,
 * errors and exit status (cli/fast/fast-vs-full.test.ts).
 */
import { readFileSync } from "node:fs";
import { fastPlan } from "./fast/argv.js";

// `protoctl ... | head` closes our stdout early: that is success, not a crash.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

function packageVersion(): string {
  for (const rel of ["../../package.json", "../package.json"]) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { version: string }).version;
    } catch {
      // the other layout (dist/cli/main.js vs cli/main.ts)
    }
  }
  return "0.0.0";
}

async function start(args: string[]): Promise<void> {
  const plan = fastPlan(args, process.env);
  if (plan) {
    const { runFast } = await import("./fast/run-fast.js");
    const code = await runFast(plan, packageVersion());
    if (code !== undefined) process.exit(code);
  }
  const { runFull } = await import("./full.js");
  runFull(args);
}

start(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`protoctl: ${String(err)}\n`);
  process.exit(1);
});
