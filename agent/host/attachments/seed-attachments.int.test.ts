import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Code } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import {
  corruptCopy,
  leftovers,
  makeOrigin,
  type Origin,
  sha256Of,
  slowSource,
  startReader,
} from "../../../test/support/agent/attachments.js";
import { dropCaches, makeTmpfsDir, type TmpfsDir, treeDigest } from "../../../test/support/agent/exports.js";
import { serveImage } from "../exports/nbd-server.js";
import type { NbdExport } from "../exports/types.js";
import { loopBackingFile } from "./loop.js";
import { SeedAttachments } from "./seed-attachments.js";

const MiB = 1024 * 1024;

describe("SeedAttachments (nbdfuse + loop + sprout)", () => {
  let origin: Origin;
  let bigSha: string;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    origin = await makeOrigin("demo@1", [64, 96]);
    bigSha = await sha256Of(join(origin.base, "data/big-1"));
  });
  afterAll(async () => {
    await origin?.cleanup();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });

  async function serve(image = origin.seed.path, name = "demo@1"): Promise<NbdExport> {
    const exp = await serveImage({
      image,
      exportName: name,
      bindAddress: "127.0.0.1",
      stateDir: origin.pool.tmpfs,
    });
    cleanups.push(() => exp.stop());
    return exp;
  }

  async function target(sizeMiB = 1024): Promise<{ state: TmpfsDir; att: SeedAttachments }> {
    const state = await makeTmpfsDir(sizeMiB);
    const att = new SeedAttachments();
    cleanups.push(() => state.cleanup());
    cleanups.push(() => att.close());
    return { state, att };
  }

  const seedInfo = () => ({
    sizeBytes: origin.seed.sizeBytes,
    checksum: origin.seed.checksum,
    subvolume: "demo@1",
  });
  /** demo@1 from the export at `uri`, its state under `stateDir`. */
  const demoAttach = (uri: string, stateDir: string, sproutBytes = 256 * MiB) => ({
    key: "demo@1",
    uri,
    seed: seedInfo(),
    stateDir,
    sproutBytes,
  });

  it("attaches lazily, hydrates under a running reader, survives the source stopping", async () => {
    const exp = await serve();
    const { state, att } = await target();
    const t0 = performance.now();
    const a = await att.attach(demoAttach(exp.uri, state.path, 512 * MiB));
    const attachMs = performance.now() - t0;
    expect(a.phase).toBe("attached");
    expect(a.transport).toBe("nbdfuse");
    expect(await readFile(join(a.subvolumePath, "etc/motd"), "utf8")).toBe("base demo@1\n");
    const usableMs = performance.now() - t0;
    console.log(`attach ${attachMs.toFixed(0)} ms, first read at ${usableMs.toFixed(0)} ms`);
    // Same key again: idempotent.
    expect((await att.attach(demoAttach(exp.uri, state.path, 512 * MiB))).seedLoop).toBe(a.seedLoop);

    // The sprout is writable: an env is a snapshot inside it.
    const env = join(a.mountpoint, "env-1");
    await run("btrfs", ["subvolume", "snapshot", a.subvolumePath, env]);
    await writeFile(join(env, "hello"), "world\n");

    const reader = startReader(join(a.subvolumePath, "data/big-1"), bigSha);
    const progress: number[] = [];
    const h0 = performance.now();
    const h = await att.hydrate("demo@1", { progress: (done) => progress.push(done) });
    const hydrateMs = performance.now() - h0;
    console.log(
      `hydrate ${origin.seed.sizeBytes} bytes in ${hydrateMs.toFixed(0)} ms (${(origin.seed.sizeBytes / MiB / (hydrateMs / 1000)).toFixed(0)} MiB/s)`,
    );
    expect(h.phase).toBe("local");
    expect(h.seedBacking).toBe(join(state.path, "demo@1", "seed.img"));
    expect(await loopBackingFile(a.seedLoop)).toBe(h.seedBacking);
    expect(progress.at(-1)).toBe(origin.seed.sizeBytes);
    // The NBD client goes, in the background (its FUSE mount and directory too).
    await vi.waitFor(async () => expect(await readdir(join(state.path, "demo@1"))).not.toContain("nbd-0"), {
      timeout: 5000,
      interval: 20,
    });

    await exp.stop();
    await dropCaches();
    const stats = await reader.stop();
    expect(stats.errors).toBe(0);
    expect(stats.mismatches).toBe(0);
    expect(stats.reads).toBeGreaterThan(0);
    expect(await treeDigest(a.subvolumePath)).toEqual(origin.digest);
    expect(await readFile(join(env, "hello"), "utf8")).toBe("world\n");

    await run("btrfs", ["subvolume", "delete", env]);
    await att.detach("demo@1");
    await att.detach("demo@1");
    expect(att.list()).toEqual([]);
    expect(await readdir(state.path)).toEqual([]);
    expect(await leftovers(state.path)).toEqual([]);
  });

  it("rejects a corrupt source by checksum, stays on NBD, then hydrates from a good source", async () => {
    const bad = join(origin.pool.tmpfs, "corrupt.img");
    // The tail of the image is free space: the filesystem mounts fine, only the checksum tells.
    await corruptCopy(origin.seed.path, bad, origin.seed.sizeBytes - 4096);
    cleanups.push(() => run("rm", ["-f", bad]));
    const badExp = await serve(bad, "corrupt");
    const good = await serve();
    const { state, att } = await target();
    const a = await att.attach(demoAttach(badExp.uri, state.path));
    const err = await att.hydrate("demo@1").catch((e) => e);
    expect(err.code).toBe(Code.DATA_LOSS);
    expect(err.reason).toBe("CHECKSUM_MISMATCH");
    const s = att.get("demo@1")!;
    expect(s.phase).toBe("attached");
    expect(s.message).toMatch(/checksum/);
    expect((await readdir(join(state.path, "demo@1"))).filter((f) => f.startsWith("seed.img"))).toEqual([]);
    expect(await sha256Of(join(a.subvolumePath, "data/big-1"))).toBe(bigSha);

    await att.switchSource("demo@1", good.uri);
    const h = await att.hydrate("demo@1");
    expect(h.phase).toBe("local");
    await good.stop();
    await badExp.stop();
    await dropCaches();
    expect(await treeDigest(a.subvolumePath)).toEqual(origin.digest);
    await att.detach("demo@1");
    expect(await leftovers(state.path)).toEqual([]);
  });

  it("re-attaches to another source when the first dies mid-hydration; readers survive", async () => {
    // ~250 MB at 200 Mbit/s: about 10 s, so the kill lands in the middle.
    const slow = await slowSource(origin.seed.path, "200M");
    cleanups.push(() => slow.kill());
    const good = await serve();
    const { state, att } = await target();
    const a = await att.attach(demoAttach(slow.uri, state.path));
    const motd = join(a.subvolumePath, "etc/motd");
    expect(await readFile(motd, "utf8")).toBe("base demo@1\n");

    // An env with a write not yet flushed (commit interval 30 s) when the source dies; while no
    // source answers, uncached reads fail with EIO, so the env is made before.
    const env = join(a.mountpoint, "env-1");
    await run("btrfs", ["subvolume", "snapshot", a.subvolumePath, env]);
    await writeFile(join(env, "note"), "before switch\n");

    let progressed = 0;
    const hydration = att.hydrate("demo@1", {
      progress: (done) => {
        progressed = done;
      },
    });
    await new Promise((r) => setTimeout(r, 1500));
    await slow.kill();
    const err = await hydration.catch((e) => e);
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.reason).toBe("SOURCE_UNAVAILABLE");
    expect(progressed).toBeLessThan(origin.seed.sizeBytes);
    expect(att.get("demo@1")!.phase).toBe("attached");

    const switched = await att.switchSource("demo@1", good.uri);
    expect(switched.uri).toBe(good.uri);
    expect(await loopBackingFile(a.seedLoop)).toBe(switched.seedBacking);
    await dropCaches();
    // The same mounted sprout reads every file again, now from the second source.
    expect(await treeDigest(a.subvolumePath)).toEqual(origin.digest);
    const reader = startReader(join(a.subvolumePath, "data/big-1"), bigSha);
    expect((await att.hydrate("demo@1")).phase).toBe("local");
    await good.stop();
    await dropCaches();
    const stats = await reader.stop();
    expect(stats.errors).toBe(0);
    expect(stats.mismatches).toBe(0);
    expect(await treeDigest(a.subvolumePath)).toEqual(origin.digest);
    expect(await readFile(join(env, "note"), "utf8")).toBe("before switch\n");
    await run("btrfs", ["subvolume", "delete", env]);
    await att.detach("demo@1");
    expect(await leftovers(state.path)).toEqual([]);
  });

  it("with no source left: clear UNAVAILABLE errors, and detach still cleans everything", async () => {
    const exp = await serve();
    const { state, att } = await target();
    await att.attach(demoAttach(exp.uri, state.path));
    await exp.stop();
    const e1 = await att.hydrate("demo@1").catch((e) => e);
    expect(e1.code).toBe(Code.UNAVAILABLE);
    const e2 = await att.switchSource("demo@1", exp.uri).catch((e) => e);
    expect(e2.code).toBe(Code.UNAVAILABLE);
    expect(e2.reason).toBe("SOURCE_UNAVAILABLE");
    expect(att.get("demo@1")!.phase).toBe("attached");
    await att.detach("demo@1");
    expect(await readdir(state.path)).toEqual([]);
    expect(await leftovers(state.path)).toEqual([]);
  });

  it("reports RESOURCE_EXHAUSTED with nothing half-attached (sprout) or stays attached (hydration)", async () => {
    const exp = await serve();
    const small = await target(64);
    const loopsBefore = await output("losetup", ["-J"]);
    const err = await small.att.attach(demoAttach(exp.uri, small.state.path)).catch((e) => e);
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.reason).toBe("NO_ROOM");
    expect(small.att.list()).toEqual([]);
    expect(await readdir(small.state.path)).toEqual([]);
    expect(await leftovers(small.state.path)).toEqual([]);
    expect(await output("losetup", ["-J"])).toBe(loopsBefore);

    // Room for the sprout (sparse), not for the ~250 MB copy.
    const mid = await target(160);
    const a = await mid.att.attach(demoAttach(exp.uri, mid.state.path, 64 * MiB));
    const e2 = await mid.att.hydrate("demo@1").catch((e) => e);
    expect(e2.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(mid.att.get("demo@1")!.phase).toBe("attached");
    expect(await readFile(join(a.subvolumePath, "etc/motd"), "utf8")).toBe("base demo@1\n");
    await mid.att.detach("demo@1");
    expect(await leftovers(mid.state.path)).toEqual([]);
  });

  it("detach of a sprout left frozen (a loop switch killed between freeze and thaw) thaws it and leaves nothing", async () => {
    const exp = await serve();
    const { state, att } = await target();
    const a = await att.attach(demoAttach(exp.uri, state.path));
    await run("fsfreeze", ["--freeze", a.mountpoint]);
    // frozen, the filesystem would outlive its unmount and hold both loop devices for good
    await att.detach("demo@1");
    expect(await readdir(state.path)).toEqual([]);
    expect(await leftovers(state.path)).toEqual([]);
    for (const dev of [a.sproutLoop, a.seedLoop]) expect(await loopBackingFile(dev)).toBeUndefined();
  });

  it("puts the sprout in sproutDir (a tmpfs), checks its room there, and removes it at detach", async () => {
    const exp = await serve();
    const t = await target();
    const tiny = await makeTmpfsDir(32, "protoctl-sprouts-");
    cleanups.push(() => tiny.cleanup());
    const opts = {
      key: "demo@1",
      uri: exp.uri,
      seed: seedInfo(),
      stateDir: t.state.path,
      sproutBytes: 256 * MiB,
    };
    const err = await t.att.attach({ ...opts, sproutDir: tiny.path }).catch((e) => e);
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toMatch(/sprout device of demo@1/);
    expect(await readdir(t.state.path)).toEqual([]);
    expect(await readdir(tiny.path)).toEqual([]);

    const sprouts = await makeTmpfsDir(512, "protoctl-sprouts-");
    cleanups.push(() => sprouts.cleanup());
    const a = await t.att.attach({ ...opts, sproutDir: sprouts.path });
    expect(await loopBackingFile(a.sproutLoop)).toBe(join(sprouts.path, "demo@1.sprout.img"));
    // env writes land in the sprout: in the tmpfs
    await writeFile(join(a.mountpoint, "written"), Buffer.alloc(8 * MiB, 1));
    await run("sync", ["-f", join(a.mountpoint, "written")]);
    const used = Number((await output("du", ["-sb", sprouts.path])).split("\t")[0]);
    expect(used).toBeGreaterThan(8 * MiB);
    await t.att.detach("demo@1");
    expect(await readdir(sprouts.path)).toEqual([]);
    expect(await leftovers(t.state.path)).toEqual([]);
    expect(await leftovers(sprouts.path)).toEqual([]);
  });
});
