#!/usr/bin/env node
/**
 * `node .ci/check-dist.mjs [DIR]` (after `npm run build`; CI step "dist holds
 * no test code"): fails when DIR (default dist/) holds test code, i.e. a file
 * the build should never emit. Product code that imports test scaffolding
 * shows up here too: tsc emits whatever the product imports.
 *
 * Plain JavaScript: it runs on the build's output.
 */
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Folder names that only test code lives in, and file names only tests use. */
const TEST_DIRS = new Set(["test", "tests", "testing", "bench", "__tests__"]);
const TEST_FILE =
  /(\.(int\.)?test\.[cm]?[jt]s|\.test-support\.[cm]?[jt]s|(^|[-.])test-support\.[cm]?[jt]s)(\.map)?$/;

/** The paths (relative, "/"-separated) among `paths` that are test code. */
export function testFiles(paths) {
  return paths.filter((p) => {
    const parts = p.split("/");
    return parts.slice(0, -1).some((d) => TEST_DIRS.has(d)) || TEST_FILE.test(parts.at(-1) ?? "");
  });
}

/** Every file under `dir`, relative to it. */
export function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p).split("\\").join("/"));
    }
  };
  walk(dir);
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = process.argv[2] ?? fileURLToPath(new URL("../dist", import.meta.url));
  const files = listFiles(dir);
  const bad = testFiles(files);
  if (files.length === 0) {
    console.error(`check-dist: ${dir} is empty: run npm run build first`);
    process.exitCode = 1;
  } else if (bad.length > 0) {
    console.error(`check-dist: ${bad.length} test file(s) in ${dir}:\n  ${bad.slice(0, 40).join("\n  ")}`);
    process.exitCode = 1;
  } else console.log(`check-dist: ${files.length} files in ${dir}, no test code`);
}
