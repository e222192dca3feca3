import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listBenches, main, needsBuild, resolveBench } from "./run.mjs";

describe("bench runner", () => {
  let root = "";
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "protoctl-bench-"));
    await mkdir(join(root, "bench/hello"), { recursive: true });
    await mkdir(join(root, "bench/typed"), { recursive: true });
    await mkdir(join(root, "bench/empty"), { recursive: true });
    await mkdir(join(root, "dist-bench/bench/typed"), { recursive: true });
    // Writes its arguments as the final JSON line to the file named by the first one.
    await writeFile(
      join(root, "bench/hello/index.mjs"),
      `import { writeFileSync } from "node:fs";
const [out, ...rest] = process.argv.slice(2);
writeFileSync(out, JSON.stringify({ args: rest, cwd: process.cwd() }) + "\\n");
process.exitCode = rest.includes("--fail") ? 3 : 0;
`,
    );
    await writeFile(join(root, "bench/typed/index.ts"), "export {};\n");
    await writeFile(join(root, "dist-bench/bench/typed/index.js"), "");
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("lists benches and resolves .mjs as is and .ts to dist", () => {
    expect(listBenches(root)).toEqual(["hello", "typed"]);
    expect(resolveBench(root, "hello")).toMatchObject({
      kind: "mjs",
      entry: join(root, "bench/hello/index.mjs"),
    });
    expect(resolveBench(root, "typed")).toMatchObject({
      kind: "ts",
      entry: join(root, "dist-bench/bench/typed/index.js"),
    });
  });

  it("rejects unknown and unsafe names, saying which benches exist", () => {
    expect(String(resolveBench(root, "nope"))).toMatch(/no bench "nope".*known: hello, typed/);
    expect(String(resolveBench(root, "../x"))).toMatch(/must match/);
    expect(String(resolveBench(root, undefined))).toMatch(/must match/);
  });

  it("rebuilds when dist is older than a source", async () => {
    const entry = join(root, "dist-bench/bench/typed/index.js");
    const past = new Date(Date.now() - 60_000);
    await utimes(entry, past, past);
    expect(needsBuild(root, entry)).toBe(true);
    await utimes(entry, new Date(), new Date(Date.now() + 60_000));
    expect(needsBuild(root, entry)).toBe(false);
    expect(needsBuild(root, join(root, "dist/missing.js"))).toBe(true);
  });

  it("runs a bench with the remaining arguments and returns its exit code", async () => {
    const out = join(root, "out.json");
    expect(await main(["hello", out, "--iterations", "3"], { root })).toBe(0);
    expect(JSON.parse(await readFile(out, "utf8"))).toEqual({ args: ["--iterations", "3"], cwd: root });
    expect(await main(["hello", out, "--fail"], { root })).toBe(3);
    expect(await main(["nope"], { root })).toBe(2);
  });
});
