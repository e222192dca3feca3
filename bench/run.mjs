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

/** Runs bench `name` with `args`; resolves to its exit code. */
export async function main(argv, { root = dirname(dirname(fileURLToPath(import.meta.url))) } = {}) {
  const [name, ...args] = argv;
  if (!name || name === "-h" || name === "--help") {
    console.error(`usage: npm run bench -- NAME [args…]\nbenches: ${listBenches(root).join(", ") || "none"}`);
    return name ? 0 : 2;
  }
  const bench = resolveBench(root, name);
  if (bench instanceof Error) {
    console.error(`bench: ${bench.message}`);
    return 2;
  }
  if (bench.kind === "ts" && needsBuild(root, bench.entry)) {
    console.error("bench: dist-bench is missing or stale, running npm run build and build:bench first");
    for (const script of ["build", "build:bench"]) {
      const built = spawnSync("npm", ["run", "-s", script], {
        cwd: root,
        stdio: ["ignore", "inherit", "inherit"],
      });
      if (built.status !== 0) return built.status ?? 1;
    }
  }
  const child = spawn(process.execPath, [bench.entry, ...args], { cwd: root, stdio: "inherit" });
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 + 1 : 1)));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
