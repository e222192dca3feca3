#!/usr/bin/env node
/**
 * Builds the web console into dist/console/: main.ts bundled (rolldown)
 * into app.js, plus index.html and app.css copied. The controller serves
 * these files as they are (controller/console/server.ts).
 */
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { rolldown } from "rolldown";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "../../../dist/console");
const started = Date.now();
await mkdir(out, { recursive: true });
const bundle = await rolldown({ input: join(here, "main.ts"), platform: "browser", logLevel: "warn" });
await bundle.write({ file: join(out, "app.js"), format: "esm", minify: true });
await bundle.close();
await copyFile(join(here, "index.html"), join(out, "index.html"));
await copyFile(join(here, "app.css"), join(out, "app.css"));
process.stderr.write(`console: dist/console in ${Date.now() - started} ms\n`);
