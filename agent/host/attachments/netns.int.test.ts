/**
 * Origin and target as two hosts (network namespaces on one bridge): the
 * export binds to the origin's address inside its namespace, with TLS and an
 * allow-list; the target's NBD clients run inside the target's namespace.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHosts, type TestHosts } from "../../../test/fixtures/hosts.js";
import { leftovers, makeOrigin, type Origin } from "../../../test/support/agent/attachments.js";
import { dropCaches, makeTestCa, makeTmpfsDir, treeDigest } from "../../../test/support/agent/exports.js";
import { serveImage } from "../exports/nbd-server.js";
import { SeedAttachments } from "./seed-attachments.js";

const MiB = 1024 * 1024;

describe("propagation between network-namespace hosts", () => {
  let hosts: TestHosts;
  let origin: Origin;

  beforeAll(async () => {
    hosts = await createHosts(2, { prefix: "pa" });
    origin = await makeOrigin("demo@1", [64]);
  });
  afterAll(async () => {
    await origin?.cleanup();
    await hosts?.cleanup();
  });

  it("attaches over TLS from another host, hydrates, and the allow-list keeps others out", async () => {
    const [h0, h1] = hosts.hosts as [(typeof hosts.hosts)[0], (typeof hosts.hosts)[0]];
    const ca = await makeTestCa(join(origin.pool.tmpfs, "ca"));
    const serverTls = await ca.issue("node-0", h0.address);
    const clientTls = await ca.issue("node-1", h1.address);
    const strangerTls = await ca.issue("node-9", h1.address);
    const exp = await serveImage({
      image: origin.seed.path,
      exportName: "demo@1",
      bindAddress: h0.address,
      stateDir: join(origin.pool.tmpfs, "export"),
      netns: h0.netns,
      tls: serverTls,
      allow: ["CN=node-1"],
    });
    const state = await makeTmpfsDir(1024);
    const att = new SeedAttachments();
    try {
      expect(exp.uri).toBe(`nbds://${h0.address}:${exp.port}/demo%401`);
      const seed = { sizeBytes: origin.seed.sizeBytes, checksum: origin.seed.checksum, subvolume: "demo@1" };
      // A node whose certificate is not on the allow-list cannot attach; nothing is left.
      const denied = await att
        .attach({
          key: "demo@1",
          uri: exp.uri,
          seed,
          stateDir: state.path,
          sproutBytes: 256 * MiB,
          tls: strangerTls,
          netns: h1.netns,
        })
        .catch((e) => e);
      expect(denied.reason).toBe("SOURCE_UNAVAILABLE");
      expect(await leftovers(state.path)).toEqual([]);

      const a = await att.attach({
        key: "demo@1",
        uri: exp.uri,
        seed,
        stateDir: state.path,
        sproutBytes: 256 * MiB,
        tls: clientTls,
        netns: h1.netns,
      });
      expect(await readFile(join(a.subvolumePath, "etc/motd"), "utf8")).toBe("base demo@1\n");
      const h = await att.hydrate("demo@1");
      expect(h.phase).toBe("local");
      await exp.stop();
      await dropCaches();
      expect(await treeDigest(a.subvolumePath)).toEqual(origin.digest);
      await att.detach("demo@1");
      expect(await leftovers(state.path)).toEqual([]);
    } finally {
      await att.close();
      await exp.stop();
      await state.cleanup();
    }
  });
});
