/**
 * The publish at seal gives way to env creates (ForegroundActivity): it
 * begins after a quiet period, waits while creates run, starts at once for a
 * push, and never outlives its deadline nor its version. Fake pool and a
 * fake image maker: no btrfs.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../common/logger.js";
import { FakePropagationPool } from "../../test/fakes/fake-propagation-pool.js";
import type { BaseVersionMeta } from "../host/interfaces.js";
import { ForegroundActivity } from "./foreground.js";
import { SeedPublisher } from "./seed-publisher.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("SeedPublisher: the publish at seal waits for a quiet moment", () => {
  let dir: string;
  let pool: FakePropagationPool;
  let activity: ForegroundActivity;
  let started: string[];
  let publisher: SeedPublisher;

  const make = (o: { quietMs: number; maxDeferMs?: number }) =>
    new SeedPublisher({
      node: "n1",
      dir: join(dir, "seeds"),
      pool,
      log: silentLogger(),
      activity,
      ...o,
      publishImage: async (subvolume, image) => {
        started.push(subvolume);
        return { path: image, sizeBytes: 4096, checksum: "blake3-4m:aa", subvolume: "x", fsid: "f" };
      },
    });

  let meta: BaseVersionMeta;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-seed-pub-"));
    pool = new FakePropagationPool();
    meta = await pool.importBase("ct", { dir: "/nowhere" });
    activity = new ForegroundActivity();
    started = [];
  });
  afterEach(async () => {
    await publisher?.close();
    await pool.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("begins quietMs after the seal when nothing runs", async () => {
    publisher = make({ quietMs: 80 });
    await publisher.restore();
    publisher.sealed(meta);
    await sleep(30);
    expect(started).toEqual([]);
    await sleep(150);
    expect(started).toHaveLength(1);
  });

  it("waits while a create runs and for quietMs after it ends", async () => {
    publisher = make({ quietMs: 60 });
    await publisher.restore();
    const end = activity.begin();
    publisher.sealed(meta);
    await sleep(150);
    expect(started).toEqual([]);
    end();
    await sleep(20);
    expect(started).toEqual([]);
    await sleep(120);
    expect(started).toHaveLength(1);
  });

  it("a push starts it at once, and the image is the push's (not at seal)", async () => {
    publisher = make({ quietMs: 10_000 });
    await publisher.restore();
    activity.begin();
    publisher.sealed(meta);
    const got = await publisher.publish(meta);
    expect(started).toHaveLength(1);
    expect(got.atSeal).toBe(false);
    expect(got.rec.atSeal).toBe(false);
  });

  it("begins at its deadline even while creates keep running", async () => {
    publisher = make({ quietMs: 50, maxDeferMs: 120 });
    await publisher.restore();
    activity.begin();
    publisher.sealed(meta);
    await sleep(60);
    expect(started).toEqual([]);
    await sleep(150);
    expect(started).toHaveLength(1);
  });

  it("a version deleted while it waits is never published", async () => {
    publisher = make({ quietMs: 50 });
    await publisher.restore();
    publisher.sealed(meta);
    await publisher.beforeDelete("ct", meta.version);
    await sleep(120);
    expect(started).toEqual([]);
  });
});
