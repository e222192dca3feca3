#!/usr/bin/env node
/**
 * Bundles the compiled CLI (dist/cli/main.js and what it imports) into
 * dist/cli/main.js plus lazily loaded chunks in dist/cli/chunks/.
 *
 * Why: Node 20 pays per module file at start-up. Unbundled, `protoctl env ls`
 * loads ~300 files (grpc-js, @bufbuild/protobuf's wire index, commander...)
 * and takes ~70 ms more than bundled — the difference between missing and
 * meeting the 150 ms start-up target (bench/cli-startup). Dynamic imports stay
 * dynamic (one chunk per command module), so lazy loading is kept.
 *
 * The agent and controller are not bundled: the CLI reaches them through
 * computed import specifiers (cli/commands/daemons.ts), resolved at run time
 * to dist/agent/main.js and dist/controller/main.js. The chunks live at the
 * same depth as dist/cli/commands/, so every relative path the code computes
 * (package.json, ../main.js, ../../agent/main.js) resolves the same way.
 *
 * Plain JavaScript: it runs after tsc, on tsc's output. When rolldown is
 * missing the unbundled output is left as is (slower start-up, same behaviour).
 */
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const entry = join(root, "dist/cli/main.js");

let rolldown;
try {
  ({ rolldown } = await import("rolldown"));
} catch {
  process.stderr.write("bundle: rolldown is not installed; dist/cli stays unbundled (slower start-up)\n");
  process.exit(0);
}

const started = Date.now();
const bundle = await rolldown({
  // main.js is the small entry with the fast path (cli/main.ts); full.js the commander CLI it
  // falls back to, an entry of its own at the same depth so its relative paths resolve alike.
  input: { main: entry, full: join(root, "dist/cli/full.js") },
  platform: "node",
  logLevel: "warn",
  // Native or worker-based packages must stay files on disk; etcd3 loads its .proto files by __dirname.
  external: ["node-pty", /^pino(-.*)?$/, "thread-stream", "etcd3"],
  treeshake: {
    // The generated control.ts builds its grpc-js client class at module load. Unary calls only
    // need the service table (paths, codecs): declaring that call pure and grpc-js free of import
    // side effects keeps grpc-js out of the chunks unary commands load (common/h2-unary.ts).
    manualPureFunctions: ["makeGenericClientConstructor"],
    moduleSideEffects: (id) => !/[\\/]node_modules[\\/]@grpc[\\/]grpc-js[\\/]/.test(id),
  },
});
await rm(join(root, "dist/cli/chunks"), { recursive: true, force: true });
await bundle.write({
  dir: join(root, "dist/cli"),
  format: "esm",
  entryFileNames: "[name].js",
  chunkFileNames: "chunks/[name]-[hash].js",
});
await bundle.close();
process.stderr.write(`bundle: dist/cli/main.js, full.js + chunks in ${Date.now() - started} ms\n`);
