#!/usr/bin/env node
/**
 * `npm run bench -- NAME [args…]` runs the benchmark in bench/NAME and passes
 * it the remaining arguments. A bench is a folder with `index.mjs` (run as
 * is) or `index.ts` (compiled by `npm run build` into dist/bench/NAME/index.js,
 * like the rest of the code, so it measures the same JavaScript that ships).
 * The build runs first when dist is missing or older than any source file.
 * Benches print their result as a final JSON line on stdout.
 *
 * Plain JavaScript on purpose: it must run before anything is built.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Folders whose TypeScript ends up in dist (tsconfig.build.json, plus what benches import). */
const SOURCE_DIRS = ["bench", "common", "agent", "controller", "cli", "proto/gen", "test/fixtures"];

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
  if (existsSync(ts)) return { kind: "ts", entry: join(root, "dist", "bench", name, "index.js"), source: ts };
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
    console.error("bench: dist is missing or stale, running npm run build first");
    const built = spawnSync("npm", ["run", "-s", "build"], {
      cwd: root,
      stdio: ["ignore", "inherit", "inherit"],
    });
    if (built.status !== 0) return built.status ?? 1;
  }
  const child = spawn(process.execPath, [bench.entry, ...args], { cwd: root, stdio: "inherit" });
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 + 1 : 1)));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
