import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import { makeTestCa } from "../../../test/support/agent/exports.js";
import { serveImage } from "./nbd-server.js";
import { withClientTls } from "./nbd-uri.js";
import { makeTlsDir } from "./tls-dir.js";

/** The client of `okDir` reads the 8 MiB image; the one of `badDir` and a plaintext client are refused. */
async function expectOnlyOkReads(uri: string, okDir: string, badDir: string): Promise<void> {
  expect(await output("nbdinfo", ["--size", withClientTls(uri, okDir)])).toBe(String(8 * 1024 * 1024));
  const bad = await run("nbdinfo", ["--size", withClientTls(uri, badDir)], { allowFailure: true });
  expect(bad.exitCode).not.toBe(0);
  const plain = await run("nbdinfo", ["--size", uri.replace("nbds://", "nbd://")], { allowFailure: true });
  expect(plain.exitCode).not.toBe(0);
}

describe("serveImage (nbdkit; qemu-nbd for a DN allow-list)", () => {
  let dir: string;
  let image: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-nbd-"));
    image = join(dir, "seed.img");
    await run("truncate", ["-s", "8M", image]);
    await chmod(image, 0o444);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("serves read-only on the bind address, answers before returning, stops cleanly", async () => {
    const exp = await serveImage({ image, exportName: "demo@1", bindAddress: "127.0.0.1", stateDir: dir });
    try {
      expect(exp.uri).toBe(`nbd://127.0.0.1:${exp.port}/demo%401`);
      expect(await output("ps", ["-o", "comm=", "-p", String(exp.pid)])).toBe("nbdkit");
      expect(exp.running).toBe(true);
      // Ready on return: no retry needed.
      expect(await output("nbdinfo", ["--size", exp.uri])).toBe(String(8 * 1024 * 1024));
      expect(await output("nbdinfo", ["--json", exp.uri])).toMatch(/"is_read_only": true/);
      // Several clients at once (--shared).
      await Promise.all([1, 2, 3].map(() => output("nbdinfo", ["--size", exp.uri])));
    } finally {
      await exp.stop();
    }
    expect(exp.running).toBe(false);
    await exp.stop(); // idempotent
    const res = await run("nbdinfo", ["--size", exp.uri], { allowFailure: true });
    expect(res.exitCode).not.toBe(0);
  });

  it("refuses a wildcard bind and an allow-list without TLS", async () => {
    await expect(
      serveImage({ image, exportName: "x", bindAddress: "0.0.0.0", stateDir: dir }),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "BAD_BIND_ADDRESS" });
    await expect(
      serveImage({ image, exportName: "x", bindAddress: "127.0.0.1", stateDir: dir, allow: ["CN=n2"] }),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "ALLOW_NEEDS_TLS" });
  });

  it("with TLS: a certificate of the cluster CA reads; another CA's and plaintext are refused", async () => {
    const ca = await makeTestCa(join(dir, "ca-a"));
    const stranger = await makeTestCa(join(dir, "ca-b"));
    const exp = await serveImage({
      image,
      exportName: "demo@1",
      bindAddress: "127.0.0.1",
      stateDir: dir,
      tls: await ca.issue("n1", "127.0.0.1"),
    });
    try {
      expect(await output("ps", ["-o", "comm=", "-p", String(exp.pid)])).toBe("nbdkit");
      const okDir = await makeTlsDir(join(dir, "cli-a"), await ca.issue("n2", "127.0.0.1"), "client");
      const badDir = await makeTlsDir(join(dir, "cli-b"), await stranger.issue("n2", "127.0.0.1"), "client");
      await expectOnlyOkReads(exp.uri, okDir, badDir);
    } finally {
      await exp.stop();
    }
  });

  it("with TLS and an allow-list: the allowed node reads, another node and plaintext are refused", async () => {
    const ca = await makeTestCa(join(dir, "ca"));
    const server = await ca.issue("n1", "127.0.0.1");
    const allowed = await ca.issue("n2", "127.0.0.1");
    const other = await ca.issue("n3", "127.0.0.1");
    const exp = await serveImage({
      image,
      exportName: "demo@1",
      bindAddress: "127.0.0.1",
      stateDir: dir,
      tls: server,
      allow: ["CN=n2"],
    });
    try {
      expect(exp.uri.startsWith("nbds://")).toBe(true);
      expect(await output("ps", ["-o", "comm=", "-p", String(exp.pid)])).toBe("qemu-nbd");
      const okDir = await makeTlsDir(join(dir, "cli-n2"), allowed, "client");
      const badDir = await makeTlsDir(join(dir, "cli-n3"), other, "client");
      await expectOnlyOkReads(exp.uri, okDir, badDir);
    } finally {
      await exp.stop();
    }
  });
});
