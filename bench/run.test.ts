import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lastReport, listBenches, main, needsBuild, resolveBench, summaryTable, verdict } from "./run.mjs";

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
if (!rest.includes("--silent")) console.log(JSON.stringify({ bench: "hello", p50_ms: 12.5, ok: !rest.includes("--miss") }));
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

  it("fails a bench whose report says ok: false, or that printed no report, even when it exited 0", async () => {
    const out = join(root, "out.json");
    expect(await main(["hello", out, "--miss"], { root })).toBe(1);
    expect(await main(["hello", out, "--silent"], { root })).toBe(1);
  });

  it("reads the last JSON line and turns it into an exit code", () => {
    expect(lastReport('progress\n{"a":1}\n{"bench":"x","ok":true}\nbye\n')).toEqual({ bench: "x", ok: true });
    expect(lastReport("no json here\n{broken")).toBeUndefined();
    expect(verdict(0, { ok: true })).toBe(0);
    expect(verdict(0, { ok: false })).toBe(1);
    expect(verdict(0, undefined)).toBe(1);
    expect(verdict(3, { ok: true })).toBe(3);
  });

  it("prints one summary row per bench with its headline figures", () => {
    const t = summaryTable([
      {
        name: "env-create",
        code: 1,
        ms: 90_000,
        report: { ok: false, p50_ms: 150, ratio: 1.4, target: 1.25 },
      },
      { name: "schedule", code: 0, ms: 30_000, report: { ok: true, rate: 2500 } },
    ]).split("\n");
    expect(t).toHaveLength(3);
    expect(t[1]).toMatch(/^env-create\s+NO\s+1\s+90\s+p50_ms=150 ratio=1.4 target=1.25$/);
    expect(t[2]).toMatch(/^schedule\s+yes\s+0\s+30\s+rate=2500$/);
  });

  it("`all` runs the quick benches present, in sequence, and fails when one misses", async () => {
    const quick = join(root, "bench/cli-startup");
    await mkdir(quick, { recursive: true });
    await writeFile(
      join(quick, "index.mjs"),
      'console.log(JSON.stringify({ bench: "cli-startup", p50_ms: 90, ok: true }));\n',
    );
    try {
      expect(await main(["all"], { root })).toBe(0);
      await writeFile(
        join(quick, "index.mjs"),
        'console.log(JSON.stringify({ bench: "cli-startup", ok: false }));\n',
      );
      expect(await main(["all"], { root })).toBe(1);
    } finally {
      await rm(quick, { recursive: true, force: true });
    }
  });
});
