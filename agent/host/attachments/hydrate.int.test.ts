import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { copyExport } from "./hydrate.js";

describe("copyExport", () => {
  let dir: string;
  let server: ChildProcess;
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-copy-"));
    // A source that connects and then never answers a read: every read waits 600 s.
    server = spawn(
      "nbdkit",
      [
        "--foreground",
        "--readonly",
        "--ipaddr=127.0.0.1",
        `--port=${port}`,
        "--filter=delay",
        "pattern",
        "64M",
        "rdelay=600",
      ],
      { stdio: "ignore" },
    );
    await new Promise((r) => setTimeout(r, 500));
  });
  afterAll(async () => {
    server?.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 100));
    await rm(dir, { recursive: true, force: true });
  });

  it("gives up on a source that stops answering, as the source's failure", async () => {
    const t = performance.now();
    const err = await copyExport({
      uri: `nbd://127.0.0.1:${port}`,
      dest: join(dir, "out.img"),
      sizeBytes: 64 * 1024 * 1024,
      connections: 2,
      stallMs: 1500,
    }).catch((e) => e);
    expect(err).toMatchObject({ code: Code.UNAVAILABLE, reason: "SOURCE_UNAVAILABLE" });
    expect(err.message).toMatch(/stalled/);
    expect(performance.now() - t).toBeLessThan(10_000);
  });
});
