#!/usr/bin/env node
/**
 * Runs after `tsc -p tsconfig.bench.json` (`npm run build:bench`). The benches
 * and the test scaffolding they import (test/support, test/fixtures…) compile
 * to dist-bench/, never to dist/ (dist ships, issue 18 item 4). tsc also emits
 * the product files they import there; those are replaced by links to dist/,
 * so a bench runs the very JavaScript that ships (and the helpers the build
 * puts beside it, like protoctl-enter). Node resolves the links to their real
 * paths, so each product module loads once.
 *
 * Plain JavaScript: it runs on tsc's output, before anything else exists.
 */
import { existsSync } from "node:fs";
import { rm, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
/** The top-level folders tsconfig.build.json compiles into dist/. */
export const PRODUCT_DIRS = ["agent", "cli", "common", "controller", "proto"];

for (const d of PRODUCT_DIRS) {
  if (!existsSync(join(root, "dist", d))) {
    process.stderr.write(`build:bench: dist/${d} is missing: run npm run build first\n`);
    process.exit(1);
  }
  await rm(join(root, "dist-bench", d), { recursive: true, force: true });
  await symlink(join("..", "dist", d), join(root, "dist-bench", d), "dir");
}
