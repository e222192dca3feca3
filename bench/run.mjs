#!/usr/bin/env node
/**
 * `npm run bench -- NAME [args…]` runs the benchmark in bench/NAME and passes
 * it the remaining arguments. A bench is a folder with `index.mjs` (run as
 * is) or `index.ts` (compiled by `npm run build:bench` into
 * dist-bench/bench/NAME/index.js, with the test scaffolding it imports; the
 * product code it imports is dist/ itself, linked: bench/link-dist.mjs, so it
 * measures the same JavaScript that ships). Both builds run first when the
 * bench's entry is missing or older than any source file.
 * Benches print their result as a final JSON line on stdout.
 *
 * Plain JavaScript on purpose: it must run before anything is built.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Folders whose TypeScript ends up in dist (tsconfig.build.json) or dist-bench (what benches import). */
const SOURCE_DIRS = ["bench", "common", "agent", "controller", "cli", "proto/gen", "test"];

/** Names of the benches in `root`/bench. */
export function listBenches(root) {
  const dir = join(root, "bench");
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && NAME.test(e.name))
    .filter((e) => ["index.mjs", "index.ts"].some((f) => existsSync(join(dir, e.name, f))))
    .map((e) => e.name)
    .sort();
}

/**
 * Where bench NAME's entry point is: `{ kind: "mjs" | "ts", entry, source }`,
 * or an Error saying what exists.
 */
export function resolveBench(root, name) {
  if (!NAME.test(name ?? "")) return new Error(`bench name must match ${NAME}, got ${JSON.stringify(name)}`);
  const dir = join(root, "bench", name);
  const mjs = join(dir, "index.mjs");
  if (existsSync(mjs)) return { kind: "mjs", entry: mjs, source: mjs };
  const ts = join(dir, "index.ts");
  if (existsSync(ts))
    return { kind: "ts", entry: join(root, "dist-bench", "bench", name, "index.js"), source: ts };
  const known = existsSync(join(root, "bench")) ? listBenches(root) : [];
  return new Error(
    `no bench ${JSON.stringify(name)} (bench/${name}/index.ts or index.mjs); known: ${known.join(", ") || "none"}`,
  );
}

/** Newest modification time (ms) of a .ts file under `dirs`, 0 when none. */
export function newestSource(root, dirs = SOURCE_DIRS) {
  let newest = 0;
  const walk = (d) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== "node_modules") walk(p);
      } else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")) {
        newest = Math.max(newest, statSync(p).mtimeMs);
      }
    }
  };
  for (const d of dirs) walk(join(root, d));
  return newest;
}

/** True when `entry` is missing or older than the newest TypeScript source. */
export function needsBuild(root, entry) {
  if (!existsSync(entry)) return true;
  return statSync(entry).mtimeMs < newestSource(root);
}

/**
 * The benches `npm run bench -- all` runs, in this order, with their default
 * sizes: the ones that take a few minutes at most. lab-up, propagate and
 * propagate-fleet take longer and are run by name.
 */
export const QUICK_BENCHES = [
  "cli-startup",
  "cli-exec",
  "pool-latency",
  "env-create",
  "schedule",
  "cli-cycle",
];

/** The last line of `text` that parses as a JSON object, or undefined. */
export function lastReport(text) {
  const lines = text.trim().split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i].trim();
    if (!l.startsWith("{")) continue;
    try {
      const v = JSON.parse(l);
      if (v && typeof v === "object") return v;
    } catch {
      // not JSON: keep looking upwards
    }
  }
  return undefined;
}

/**
 * A bench's exit code from its own and its report: a report with `"ok": false`
 * is a failure (1) even when the bench itself exited 0, and so is a bench
 * that exited 0 without any report.
 */
export function verdict(code, report) {
  if (code !== 0) return code;
  if (report?.ok !== true) return 1;
  return 0;
}

/** Runs bench `name` with `args`, its stdout copied through; resolves to { code, report }. */
async function runBench(root, name, args) {
  const bench = resolveBench(root, name);
  if (bench instanceof Error) {
    console.error(`bench: ${bench.message}`);
    return { code: 2, report: undefined };
  }
  if (bench.kind === "ts" && needsBuild(root, bench.entry)) {
    console.error("bench: dist-bench is missing or stale, running npm run build and build:bench first");
    for (const script of ["build", "build:bench"]) {
      const built = spawnSync("npm", ["run", "-s", script], {
        cwd: root,
        stdio: ["ignore", "inherit", "inherit"],
      });
      if (built.status !== 0) return { code: built.status ?? 1, report: undefined };
    }
  }
  const child = spawn(process.execPath, [bench.entry, ...args], {
    cwd: root,
    stdio: ["inherit", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (b) => {
    process.stdout.write(b);
    // only the tail matters (the final JSON line); keep memory bounded
    out = (out + b.toString()).slice(-65536);
  });
  const code = await new Promise((resolve) => {
    child.once("close", (c, signal) => resolve(c ?? (signal ? 128 + 1 : 1)));
  });
  const report = lastReport(out);
  return { code: verdict(code, report), report };
}

/** Keys shown in the `all` summary, when a report has them. */
const SUMMARY_KEYS = [
  "p50_ms",
  "ratio",
  "rate",
  "placements_per_s",
  "version_p50_ms",
  "exec_p50_ms",
  "first_create_ms",
  "rss_mb_100_envs",
  "target",
];

/** One line per bench: name, ok, exit, seconds, headline figures. */
export function summaryTable(rows) {
  const lines = [["bench", "ok", "exit", "s", "figures"]];
  for (const r of rows) {
    const figs = SUMMARY_KEYS.filter((k) => typeof r.report?.[k] === "number")
      .map((k) => `${k}=${r.report[k]}`)
      .join(" ");
    lines.push([r.name, r.code === 0 ? "yes" : "NO", String(r.code), (r.ms / 1000).toFixed(0), figs || "-"]);
  }
  const width = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines.map((l) => l.map((c, i) => (i < l.length - 1 ? c.padEnd(width[i]) : c)).join("  ")).join("\n");
}

/** Runs bench `name` with `args` (or every quick bench for `all`); resolves to the exit code. */
export async function main(argv, { root = dirname(dirname(fileURLToPath(import.meta.url))) } = {}) {
  const [name, ...args] = argv;
  if (!name || name === "-h" || name === "--help") {
    console.error(
      `usage: npm run bench -- NAME [args…] | all\nbenches: ${listBenches(root).join(", ") || "none"}\n` +
        `all: ${QUICK_BENCHES.join(", ")} in sequence, then one summary table`,
    );
    return name ? 0 : 2;
  }
  if (name !== "all") return (await runBench(root, name, args)).code;
  const rows = [];
  for (const b of QUICK_BENCHES.filter((q) => listBenches(root).includes(q))) {
    console.error(`bench all: ${b}`);
    const t0 = Date.now();
    const r = await runBench(root, b, []);
    rows.push({ name: b, ms: Date.now() - t0, ...r });
  }
  process.stdout.write(`${summaryTable(rows)}\n`);
  const ok = rows.every((r) => r.code === 0);
  process.stdout.write(
    `${JSON.stringify({ bench: "all", ok, benches: rows.map((r) => ({ name: r.name, exit: r.code, ok: r.report?.ok ?? false })) })}\n`,
  );
  return ok ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
