/**
 * PropagationService on the fakes (attachments, exports, pool): what it
 * records, registers with the pool and refuses, without NBD or btrfs.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { silentLogger } from "../../common/logger.js";
import { expectCode } from "../../test/contracts/expect-code.js";
import { FakeAttachments } from "../../test/fakes/fake-attachments.js";
import { FakeExports } from "../../test/fakes/fake-exports.js";
import { FakePropagationPool } from "../../test/fakes/fake-propagation-pool.js";
import { PropagationService } from "./propagation-service.js";

const GOOD = "nbd://10.0.0.1:10809/ct%401";
const OTHER = "nbd://10.0.0.2:10809/ct%401";
const CORRUPT = "nbd://10.0.0.3:10809/ct%401";
const seed = { sizeBytes: 4 << 20, checksum: "blake3-4m:aa", subvolume: "ct@1" };
const files = { "etc/motd": "base ct@1\n" };

describe("PropagationService (fakes)", () => {
  let dir: string;
  let pool: FakePropagationPool;
  let att: FakeAttachments;
  let exports: FakeExports;
  const make = (attachments = att) =>
    new PropagationService({
      node: "n1",
      dir,
      pool,
      bindAddress: "127.0.0.1",
      log: silentLogger(),
      attachments,
      exports,
    });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-prop-svc-"));
    pool = new FakePropagationPool();
    att = new FakeAttachments();
    exports = new FakeExports();
    att.sources.set(GOOD, { checksum: seed.checksum, subvolume: "ct@1", files });
    att.sources.set(OTHER, { checksum: seed.checksum, subvolume: "ct@1", files });
    att.sources.set(CORRUPT, { checksum: "blake3-4m:bb", subvolume: "ct@1", files });
  });
  afterEach(async () => {
    for (const e of exports.serving) await e.stop();
    await pool.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  const records = async () => (await readdir(join(dir, "attachments"))).filter((f) => f.endsWith(".json"));
  const req = (uri: string, hydrate: boolean) => ({
    base: "ct",
    version: 1,
    uri,
    seed,
    sourceNode: "origin",
    hydrate,
  });

  it("attaches, registers the version with the pool, records it, then hydrates", async () => {
    const svc = make();
    await svc.restore();
    // the copy workers start with the first hydration: neither with the agent nor with the attach
    expect(att.warmed).toBe(false);
    const steps: string[] = [];
    const a = await svc.attach(req(GOOD, false), (p) => steps.push(p.step));
    expect(att.warmed).toBe(false);
    expect(a).toMatchObject({ base: "ct", version: 1, sourceNode: "origin", checksum: seed.checksum });
    expect(a.state.phase).toBe("attached");
    expect(pool.externalState("ct", 1)).toBe("attached");
    expect((await pool.baseRoot("ct", 1)).root).toBe(a.state.subvolumePath);
    expect(await records()).toEqual(["ct@1.json"]);
    expect(svc.heldState("ct", 1)).toBe("attached");
    expect(svc.heldChecksum("ct", 1)).toBe(seed.checksum);

    const h = await svc.attach(req(GOOD, true), (p) => steps.push(p.step));
    expect(att.warmed).toBe(true);
    expect(h.state.phase).toBe("local");
    expect(pool.externalState("ct", 1)).toBe("hydrated");
    expect(steps).toEqual(["attaching", "attached", "attached", "hydrating", "hydrating", "local"]);
    expect(svc.listAttachments().map((x) => x.state.key)).toEqual(["ct@1"]);
  });

  it("answers LOCAL for a version the pool holds itself, attaching nothing", async () => {
    const meta = await pool.importBase("ct", { dir: "/nowhere" });
    const svc = make();
    const a = await svc.attach(req(GOOD, true));
    expect(a.state.phase).toBe("local");
    expect(a.sourceNode).toBe("");
    expect(att.list()).toEqual([]);
    expect((await svc.get("ct", meta.version)).state.phase).toBe("local");
  });

  it("keeps a corrupt source's attachment on NBD; a good source then switches and hydrates it", async () => {
    const svc = make();
    await expectCode(svc.attach(req(CORRUPT, true)), Code.DATA_LOSS, "CHECKSUM_MISMATCH");
    expect((await svc.get("ct", 1)).state).toMatchObject({ phase: "attached", uri: CORRUPT });
    expect(pool.externalState("ct", 1)).toBe("attached");
    const h = await svc.attach(req(OTHER, true));
    expect(h.state.phase).toBe("local");
    expect(att.get("ct@1")?.phase).toBe("local");
  });

  it("refuses an attach without a version or URI", async () => {
    const svc = make();
    await expectCode(
      svc.attach({ ...req(GOOD, false), version: 0 }),
      Code.INVALID_ARGUMENT,
      "VERSION_REQUIRED",
    );
    await expectCode(svc.attach({ ...req("", false) }), Code.INVALID_ARGUMENT, "URI_REQUIRED");
    expect(att.list()).toEqual([]);
  });

  it("serves an attachment's seed loop, and says SEED_NOT_FOUND for what it does not hold", async () => {
    const svc = make();
    await expectCode(svc.serve("ct", 1), Code.NOT_FOUND, "SEED_NOT_FOUND");
    const a = await svc.attach(req(GOOD, false));
    const info = await svc.serve("ct", 1);
    expect(info.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/ct%401$/);
    expect([...exports.serving].map((e) => e.image)).toEqual([a.state.seedLoop]);
    expect(await svc.serve("ct", 1)).toBe(info);
    expect(svc.listExports()).toEqual([info]);
  });

  it("publishes a local version once, then serves its image", async () => {
    await pool.importBase("ct", { dir: "/nowhere" });
    const svc = make();
    const [s1, s2] = await Promise.all([svc.publish("ct", 1), svc.publish("ct", 1)]);
    expect(s1.rec).toBe(s2.rec);
    expect(s1).toMatchObject({ atSeal: false, rec: { base: "ct", version: 1, node: "n1" } });
    expect(existsSync(join(dir, "seeds", "ct@1.json"))).toBe(true);
    expect([...exports.serving]).toEqual([]);
    await svc.serve("ct", 1);
    expect([...exports.serving].map((e) => e.image)).toEqual([s1.rec.path]);
    await svc.deleteSeed("ct", 1);
    expect(svc.seed("ct", 1)).toBeUndefined();
    expect([...exports.serving]).toEqual([]);
  });

  it("refuses to detach a version envs use; detaches it, export and record included, once they are gone", async () => {
    const svc = make();
    await svc.attach(req(GOOD, false));
    await svc.serve("ct", 1);
    pool.users.set("ct@1", ["web"]);
    await expectCode(svc.detach("ct", 1), Code.FAILED_PRECONDITION, "BASE_IN_USE");
    expect(att.get("ct@1")).toBeDefined();
    pool.users.delete("ct@1");
    await svc.detach("ct", 1);
    expect(att.list()).toEqual([]);
    expect(pool.externalState("ct", 1)).toBeUndefined();
    expect([...exports.serving]).toEqual([]);
    expect(await records()).toEqual([]);
  });

  it("after a restart adopts what is still mounted and cleans the record of what is not", async () => {
    const first = make();
    await first.restore();
    await first.attach(req(GOOD, false));
    await first
      .attach({ ...req(OTHER, false), base: "db", seed: { ...seed, subvolume: "db@1" } })
      .catch(() => {
        // OTHER serves ct@1, not db@1: no attachment, no record
      });
    expect(await records()).toEqual(["ct@1.json"]);

    // the same host after an agent restart: a new service, a new pool, the mounts still there
    await pool.destroy(); // its temp dir; the next stands for the same host
    pool = new FakePropagationPool();
    const again = make(new FakeAttachments(att));
    await again.restore();
    expect(pool.externalState("ct", 1)).toBe("attached");
    expect(again.listAttachments().map((a) => a.state.uri)).toEqual([GOOD]);

    // and with the mount gone (a reboot): the record goes
    await att.detach("ct@1");
    await pool.destroy(); // its temp dir; the next stands for the same host
    pool = new FakePropagationPool();
    const third = make(new FakeAttachments(att));
    await third.restore();
    expect(third.listAttachments()).toEqual([]);
    expect(await records()).toEqual([]);
  });
});
