import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { connect as netConnect, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNbdkit } from "../../../test/support/agent/attachments.js";
import { makeTestCa } from "../../../test/support/agent/exports.js";
import { serveImage } from "../exports/nbd-server.js";
import type { NbdExport } from "../exports/types.js";
import { NbdClient, type NbdClientOptions, readInto } from "./nbd-client.js";
import { dataRanges } from "./piece-copy.js";

const MiB = 1024 * 1024;

describe("NbdClient against nbdkit", () => {
  let dir: string;
  let image: string;
  let content: Buffer;
  const stops: NbdExport[] = [];
  const serve = async (tls?: Awaited<ReturnType<Awaited<ReturnType<typeof makeTestCa>>["issue"]>>) => {
    const exp = await serveImage({
      image,
      exportName: "demo@1",
      bindAddress: "127.0.0.1",
      stateDir: dir,
      tls,
    });
    stops.push(exp);
    return exp;
  };
  const opts = (exp: NbdExport, more: Partial<NbdClientOptions> = {}): NbdClientOptions => ({
    host: "127.0.0.1",
    port: exp.port,
    exportName: "demo@1",
    ...more,
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-nbdc-"));
    image = join(dir, "seed.img");
    // 24 MiB, sparse: data at [1 MiB, 3 MiB) and [20 MiB, 20 MiB + 4 KiB), holes elsewhere.
    const fh = await open(image, "w");
    await fh.truncate(24 * MiB);
    await fh.write(randomBytes(2 * MiB), 0, 2 * MiB, MiB);
    await fh.write(randomBytes(4096), 0, 4096, 20 * MiB);
    await fh.close();
    content = await readFile(image);
  });
  afterAll(async () => {
    for (const e of stops) await e.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("negotiates, maps holes, and reads pipelined requests byte-exact", async () => {
    const exp = await serve();
    const c = await NbdClient.connect(opts(exp));
    try {
      expect(c.readMode).toBe("placed");
      expect(c.size).toBe(24 * MiB);
      expect(c.hasBlockStatus).toBe(true);
      expect(dataRanges(await c.blockStatus(0, c.size))).toEqual([
        [MiB, 3 * MiB],
        [20 * MiB, 20 * MiB + 4096],
      ]);
      // 40 reads in flight at once, of odd sizes, some across data and hole.
      const reqs = Array.from({ length: 40 }, (_, i) => {
        const off = (i * 611_953) % (22 * MiB);
        return { off, len: 1 + ((i * 97_331) % (2 * MiB)) };
      });
      const bufs = reqs.map((r) => Buffer.alloc(r.len + 8, 0xee));
      await Promise.all(reqs.map((r, i) => c.read(r.off, r.len, bufs[i]!, 8)));
      reqs.forEach((r, i) => {
        expect(bufs[i]!.subarray(8).equals(content.subarray(r.off, r.off + r.len))).toBe(true);
        expect(bufs[i]!.subarray(0, 8).every((b) => b === 0xee)).toBe(true);
      });
    } finally {
      c.close();
    }
  });

  it("readInto leaves alone a socket that has no handle or already reads into its own buffer", async () => {
    const next = () => Buffer.alloc(16);
    expect(readInto(new Socket(), next, () => undefined)).toBe(false);
    const exp = await serve();
    const own = Buffer.alloc(64);
    let got = 0;
    const s = netConnect({
      host: "127.0.0.1",
      port: exp.port,
      onread: {
        buffer: own,
        callback: (n) => {
          got += n;
          return true;
        },
      },
    });
    try {
      await new Promise((r) => s.once("connect", r));
      expect(readInto(s, next, () => undefined)).toBe(false);
      // Still its own: the server's greeting (18 bytes) lands in `own`.
      await expect.poll(() => got, { timeout: 5000 }).toBe(18);
      expect(own.readBigUInt64BE(0)).toBe(0x4e42444d41474943n);
    } finally {
      s.destroy();
    }
  });

  it("fails requests when the server goes away, and connections to where it was", async () => {
    const exp = await serve();
    const c = await NbdClient.connect(opts(exp));
    await exp.stop();
    await expect(c.read(0, MiB, Buffer.alloc(MiB), 0)).rejects.toThrow();
    c.destroy();
    await expect(NbdClient.connect(opts(exp, { connectTimeoutMs: 2000 }))).rejects.toThrow();
  });

  it("turns the server's read errors into rejected reads, and the connection goes on", async () => {
    // nbdkit's error filter fails every read with EIO while the file "fail-now" exists.
    const srv = await startTestNbdkit([
      "--filter=error",
      "pattern",
      "2M",
      "error-pread=EIO",
      "error-pread-rate=100%",
      `error-pread-file=${join(dir, "fail-now")}`,
    ]);
    try {
      const c = await NbdClient.connect({ host: "127.0.0.1", port: srv.port, exportName: "" });
      try {
        const buf = Buffer.alloc(MiB);
        await c.read(0, MiB, buf, 0);
        // pattern: each 8-byte word holds its own offset
        expect(buf.readBigUInt64BE(8)).toBe(8n);
        await open(join(dir, "fail-now"), "w").then((f) => f.close());
        await expect(c.read(MiB, MiB, buf, 0)).rejects.toMatchObject({ name: "NbdError", errno: 5 });
        await rm(join(dir, "fail-now"));
        await c.read(MiB, 4096, buf, 0);
        expect(buf.readBigUInt64BE(0)).toBe(BigInt(MiB));
      } finally {
        c.close();
      }
    } finally {
      await srv.kill();
    }
  });

  it("over TLS: reads with a certificate of the cluster CA; another CA's and plaintext are refused", async () => {
    const ca = await makeTestCa(join(dir, "ca-a"));
    const stranger = await makeTestCa(join(dir, "ca-b"));
    const exp = await serve(await ca.issue("n1", "127.0.0.1"));
    const pem = async (f: { caFile: string; certFile: string; keyFile: string }) => ({
      ca: await readFile(f.caFile),
      cert: await readFile(f.certFile),
      key: await readFile(f.keyFile),
    });
    const c = await NbdClient.connect(opts(exp, { tls: await pem(await ca.issue("n2", "127.0.0.1")) }));
    try {
      // Decrypted straight into the caller's buffers (readInto), not through 'data' events.
      expect(c.readMode).toBe("placed");
      const buf = Buffer.alloc(3 * MiB);
      await c.read(0, buf.length, buf, 0);
      expect(buf.equals(content.subarray(0, 3 * MiB))).toBe(true);
      // Pipelined reads of odd sizes and offsets, into one buffer at odd places.
      const reqs = Array.from({ length: 24 }, (_, i) => ({
        off: (i * 711_011) % (22 * MiB),
        len: 1 + ((i * 59_999) % (2 * MiB)),
      }));
      const bufs = reqs.map((r) => Buffer.alloc(r.len + 5, 0xee));
      await Promise.all(reqs.map((r, i) => c.read(r.off, r.len, bufs[i]!, 5)));
      reqs.forEach((r, i) => {
        expect(bufs[i]!.subarray(5).equals(content.subarray(r.off, r.off + r.len))).toBe(true);
        expect(bufs[i]!.subarray(0, 5).every((b) => b === 0xee)).toBe(true);
      });
    } finally {
      c.close();
    }
    // Another CA's certificate: the server's is not trusted by this client, nor its by the server.
    await expect(
      NbdClient.connect(opts(exp, { tls: await pem(await stranger.issue("n2", "127.0.0.1")) })),
    ).rejects.toThrow();
    // Plaintext: the server requires TLS before it names an export.
    await expect(NbdClient.connect(opts(exp))).rejects.toThrow(/refused/);
  });
});
