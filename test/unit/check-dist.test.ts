import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { listFiles, testFiles } from "../../.ci/check-dist.mjs";

describe("check-dist", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("flags test folders and test file names, not product files", () => {
    const paths = [
      "agent/main.js",
      "agent/host/pool/pool.js",
      "agent/host/pool/pool.js.map",
      "cli/chunks/env-abc123.js",
      "test/support/agent/machines.js",
      "controller/testing/cluster.js",
      "bench/env-create/index.js",
      "agent/server/test-support.js",
      "agent/host/pool/pool.test.js",
      "agent/host/pool/pool.int.test.js.map",
      "common/latest.js",
      "common/contest.js",
    ];
    expect(testFiles(paths)).toEqual([
      "test/support/agent/machines.js",
      "controller/testing/cluster.js",
      "bench/env-create/index.js",
      "agent/server/test-support.js",
      "agent/host/pool/pool.test.js",
      "agent/host/pool/pool.int.test.js.map",
    ]);
  });

  it("lists every file of a tree relative to it", async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-check-dist-"));
    await mkdir(join(dir, "a/test"), { recursive: true });
    await writeFile(join(dir, "a/x.js"), "");
    await writeFile(join(dir, "a/test/y.js"), "");
    expect(listFiles(dir).sort()).toEqual(["a/test/y.js", "a/x.js"]);
    expect(testFiles(listFiles(dir))).toEqual(["a/test/y.js"]);
  });
});
