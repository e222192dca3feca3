/**
 * The target side of propagation (DESIGN.md, "Propagation: seed + NBD, lazy
 * then local"), one attachment per seed per host:
 *
 *   attach:   NBD client (nbdfuse file or /dev/nbdN) → read-only loop (direct
 *             I/O) → mount ro → btrfs device add <local sprout loop> →
 *             remount rw. The base subvolume is usable now;
 *             envs are snapshots inside the sprout. The sprout's file goes in
 *             sproutDir (the agent's tmpfs) when given; the hydrated image in
 *             stateDir (a disk), as it is the size of the whole version.
 *   hydrate:  copy the export to a local file → checksum → LOOP_CHANGE_FD the
 *             seed loop to it → drop the NBD client. No unmount: readers keep
 *             reading. (Not `btrfs device remove`: it relocates every chunk.)
 *   switch:   a source died: LOOP_CHANGE_FD the seed loop to the nbdfuse file
 *             of another source (same bytes, same size), drop the old client.
 *
 * A checksum mismatch leaves the attachment on NBD (phase "attached", the
 * bad copy deleted); the caller may retry from another source or detach.
 *
 * Operations on one key are serialized; every multi-step operation undoes
 * itself on failure (common/revert.ts).
 */
import { mkdir, open, readdir, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import { Revert } from "../../../common/revert.js";
import { requireTools } from "../../../common/tools.js";
import { CHECKSUM_ALGO } from "../exports/checksum.js";
import { makeTlsDir } from "../exports/tls-dir.js";
import type { TlsFiles } from "../exports/types.js";
import {
  adoptedConnection,
  cleanLeftovers,
  DEFAULT_CONNECTIONS,
  type Entry,
  SPROUT_START_BYTES,
  sproutFileOf,
  toError,
  validateKey,
} from "./attachment-entry.js";
import { warmCopyWorkers } from "./copy-pool.js";
import { withHostLock } from "./host-lock.js";
import { copiesInPieces, copyThreads, requireRoom } from "./hydrate.js";
import { hydrateEntry } from "./hydrate-entry.js";
import { attachLoop, detachLoop, forgetBtrfsDevice, loopBackingFile, prepareLoopSwitch } from "./loop.js";
import { connectNbd, detectTransport, isMountpoint } from "./nbd-transport.js";
import { prepareSprout } from "./sprout.js";
import type { AgentAttachments, AttachmentState, AttachOptions, HydrateOptions } from "./types.js";

export { validateKey } from "./attachment-entry.js";

export class SeedAttachments implements AgentAttachments {
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Per key: room promised in a state dir to its hydrated image, until the image is written. */
  private readonly promised = new Map<string, { dir: string; bytes: number }>();

  /**
   * Room promised in `dir` to other attachments' hydrated images and not written yet. A copy is
   * sparse and takes its room as it lands, so without this, versions attached at once on a node
   * with room for one each passed the room checks, and one ran out in the middle of its copy.
   */
  private promisedBesides(key: string, dir: string): number {
    let n = 0;
    for (const [k, p] of this.promised) {
      if (k === key || p.dir !== dir) continue;
      n += Math.max(0, p.bytes - (this.entries.get(k)?.state.hydratedBytes ?? 0));
    }
    return n;
  }

  /** Runs `fn` after every earlier operation on `key`. */
  private serialize<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return next;
  }

  /**
   * The node's client TLS files, once known: attachments adopted before
   * (an agent restart reads its attachments before it rejoins) use them to
   * re-attach and hydrate from nbds:// sources.
   */
  setTls(tls: TlsFiles | undefined): void {
    if (!tls) return;
    for (const e of this.entries.values()) e.opts = { ...e.opts, tls: e.opts.tls ?? tls };
  }

  get(key: string): AttachmentState | undefined {
    const e = this.entries.get(key);
    return e ? { ...e.state } : undefined;
  }

  list(): AttachmentState[] {
    return [...this.entries.values()].map((e) => ({ ...e.state }));
  }

  attach(o: AttachOptions): Promise<AttachmentState> {
    validateKey(o.key);
    return this.serialize(o.key, () => this.attachLocked(o));
  }

  private async attachLocked(o: AttachOptions): Promise<AttachmentState> {
    const existing = this.entries.get(o.key);
    if (existing) {
      if (existing.opts.uri === o.uri || existing.state.phase === "local") return { ...existing.state };
      throw alreadyExists(`seed ${o.key} is already attached from ${existing.opts.uri}`, {
        reason: "ALREADY_ATTACHED",
        subject: `attachment/${o.key}`,
        hint: "switch the source or detach first",
      });
    }
    if (!(o.sproutBytes > 0)) throw invalidArgument("sproutBytes must be positive");
    const kind = !o.transport || o.transport === "auto" ? await detectTransport() : o.transport;
    await requireTools([
      "btrfs",
      "losetup",
      "mount",
      "umount",
      "python3",
      ...(kind === "kernel" ? ["nbd-client"] : ["nbdfuse", "fusermount3", ...(o.tls ? ["nbdkit"] : [])]),
      ...(o.netns ? ["nsenter"] : []),
    ]);
    await mkdir(o.stateDir, { recursive: true });
    // Counted and promised in one step (no await between): attaches running at once see each other.
    const promised = this.promisedBesides(o.key, o.stateDir);
    this.promised.set(o.key, { dir: o.stateDir, bytes: o.seed.sizeBytes });
    try {
      // Checked before anything exists, so a full target has nothing to undo.
      if (o.sproutDir) {
        await requireRoom(o.sproutDir, SPROUT_START_BYTES, `the sprout device of ${o.key}`);
        if (o.reserveBytes)
          await requireRoom(o.stateDir, o.reserveBytes, `the hydrated image of ${o.key}`, promised);
      } else {
        await requireRoom(
          o.stateDir,
          o.reserveBytes ?? o.sproutBytes,
          `the sprout device${o.reserveBytes ? " and the hydrated image" : ""} of ${o.key}`,
          promised,
        );
      }
    } catch (err) {
      this.promised.delete(o.key);
      throw err;
    }

    const dir = join(o.stateDir, o.key);
    const r = new Revert();
    const t0 = performance.now();
    const marks = { nbd: 0, devices: 0, locked: 0, mounted: 0 };
    try {
      await mkdir(dir);
      r.add(() => rm(dir, { recursive: true, force: true }));
    } catch (err) {
      this.promised.delete(o.key);
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        throw failedPrecondition(`${dir} exists: a previous attachment of ${o.key} was not cleaned`, {
          reason: "STALE_ATTACHMENT",
          subject: dir,
          hint: "remove it (after unmounting) or restart the agent to clean orphans",
        });
      }
      throw err;
    }
    try {
      // The mount-and-sprout helper starts now and waits (sprout.ts): its start overlaps the NBD connect.
      const sprouter = prepareSprout();
      r.add(() => sprouter.cancel());
      const tlsDir = o.tls ? await makeTlsDir(join(dir, "tls-client"), o.tls, "client") : undefined;
      const connections = o.connections ?? DEFAULT_CONNECTIONS;
      const nbd = await connectNbd({
        uri: o.uri,
        tlsDir,
        dir: join(dir, "nbd-0"),
        connections,
        sizeBytes: o.seed.sizeBytes,
        kind,
        tls: o.tls,
        netns: o.netns,
      });
      r.add(() => nbd.close());
      marks.nbd = performance.now();

      const seedLoop = await attachLoop(nbd.path, { readOnly: true, directIo: true });
      r.add(() => detachLoop(seedLoop));
      r.add(() => forgetBtrfsDevice(seedLoop));

      const sproutFile = sproutFileOf(o, dir);
      // In sproutDir a file of this key is a leftover (the attachment's dir did not exist).
      if (o.sproutDir) await rm(sproutFile, { force: true });
      const fh = await open(sproutFile, "wx", 0o600);
      r.add(() => rm(sproutFile, { force: true }));
      try {
        await fh.truncate(o.sproutBytes);
      } finally {
        await fh.close();
      }
      const sproutLoop = await attachLoop(sproutFile);
      r.add(() => detachLoop(sproutLoop));
      r.add(() => forgetBtrfsDevice(sproutLoop));

      const mountpoint = o.mountpoint ?? join(dir, "mnt");
      await mkdir(mountpoint, { recursive: true });
      let mounted = false;
      r.add(() => (mounted ? run("umount", [mountpoint], { allowFailure: true }) : undefined));
      marks.devices = performance.now();
      // One unsprouted mount of a seed per host at a time (host-lock.ts).
      await withHostLock(`seed-${o.seed.checksum.split(":").at(-1)!.slice(0, 16)}`, async () => {
        marks.locked = performance.now();
        await sprouter.go(seedLoop, sproutLoop, mountpoint);
        mounted = true;
      });
      // Sprouted, the filesystem has its own fsid and the seed's is free for the next mount: the
      // switch to read-write needs no lock. A remount keeps what the ro mount has read (an
      // unmount and a fresh mount read the metadata over NBD again).
      await run("mount", ["-o", "remount,rw", mountpoint]);
      marks.mounted = performance.now();

      const subvolumePath = join(mountpoint, o.seed.subvolume);
      if (
        !(await stat(subvolumePath).then(
          (s) => s.isDirectory(),
          () => false,
        ))
      ) {
        throw failedPrecondition(`the seed from ${o.uri} has no subvolume ${o.seed.subvolume}`, {
          reason: "SEED_CONTENT_MISMATCH",
          subject: `attachment/${o.key}`,
        });
      }
      r.success();
      const entry: Entry = {
        opts: { ...o, connections },
        dir,
        nbd,
        sources: 1,
        tlsDir,
        ownMountpoint: o.mountpoint === undefined,
        state: {
          key: o.key,
          phase: "attached",
          uri: o.uri,
          transport: kind,
          mountpoint,
          subvolumePath,
          seedLoop,
          sproutLoop,
          seedBacking: nbd.path,
          hydratedBytes: 0,
          sizeBytes: o.seed.sizeBytes,
          message: "",
          attachTiming: {
            nbdMs: marks.nbd - t0,
            devicesMs: marks.devices - marks.nbd,
            lockWaitMs: marks.locked - marks.devices,
            mountMs: marks.mounted - marks.locked,
            totalMs: performance.now() - t0,
          },
        },
      };
      this.entries.set(o.key, entry);
      return { ...entry.state };
    } catch (err) {
      this.promised.delete(o.key);
      await r.fail();
      throw toError(err, `attaching ${o.key} from ${o.uri} failed`, `attachment/${o.key}`);
    }
  }

  hydrate(key: string, opts: HydrateOptions = {}): Promise<AttachmentState> {
    const e = this.entries.get(key);
    if (e?.hydrating) return e.hydrating;
    const p = this.serialize(key, () => this.hydrateLocked(key, opts));
    if (e) {
      e.hydrating = p;
      void p
        .catch(() => undefined)
        .finally(() => {
          if (e.hydrating === p) e.hydrating = undefined;
        });
    }
    return p;
  }

  private async hydrateLocked(key: string, opts: HydrateOptions): Promise<AttachmentState> {
    const e = this.mustGet(key);
    const s = await hydrateEntry(e, key, opts, this.promisedBesides(key, e.opts.stateDir));
    if (s.phase === "local") this.promised.delete(key);
    return s;
  }

  switchSource(key: string, uri: string): Promise<AttachmentState> {
    return this.serialize(key, () => this.switchLocked(key, uri));
  }

  private async switchLocked(key: string, uri: string): Promise<AttachmentState> {
    const e = this.mustGet(key);
    if (e.state.phase === "local") return { ...e.state };
    const n = e.sources;
    e.sources++;
    const sw = await prepareLoopSwitch(e.state.seedLoop, e.state.mountpoint);
    const next = await connectNbd({
      uri,
      tlsDir: e.tlsDir,
      dir: join(e.dir, `nbd-${n}`),
      connections: e.opts.connections ?? DEFAULT_CONNECTIONS,
      sizeBytes: e.state.sizeBytes,
      kind: e.state.transport === "kernel" ? "kernel" : "nbdfuse",
      tls: e.opts.tls,
      netns: e.opts.netns,
    }).catch(async (err) => {
      await sw.cancel();
      const pe = toError(err, `switching ${key} to ${uri} failed`, `attachment/${key}`);
      e.state.message = pe.message;
      throw pe;
    });
    try {
      await sw.go(next.path);
    } catch (err) {
      await next.close();
      throw toError(err, `switching ${key} to ${uri} failed`, `attachment/${key}`);
    }
    const old = e.nbd;
    e.nbd = next;
    e.opts = { ...e.opts, uri };
    Object.assign(e.state, { uri, seedBacking: next.path, message: "", phase: "attached" });
    await old?.close();
    return { ...e.state };
  }

  detach(key: string): Promise<void> {
    return this.serialize(key, () => this.detachLocked(key));
  }

  /**
   * After an agent restart: takes back an attachment recorded by the previous
   * process. When its sprout is still mounted over the recorded loop devices
   * it is adopted (local when the seed loop reads the hydrated copy, else
   * "attached" on the old NBD client, which the caller should replace with
   * switchSource); otherwise whatever is left of it is removed and undefined
   * is returned.
   */
  adopt(o: AttachOptions, s: AttachmentState): Promise<AttachmentState | undefined> {
    validateKey(o.key);
    return this.serialize(o.key, async () => {
      const dir = join(o.stateDir, o.key);
      const final = join(dir, "seed.img");
      const seedBacking = await loopBackingFile(s.seedLoop);
      const sproutBacking = await loopBackingFile(s.sproutLoop);
      // An attachment made before its agent kept sprouts in sproutDir has it in its own dir.
      const intact =
        (await isMountpoint(s.mountpoint)) &&
        (sproutBacking === sproutFileOf(o, dir) || sproutBacking === join(dir, "sprout.img")) &&
        (seedBacking === final || (seedBacking?.startsWith(`${dir}/nbd-`) ?? false));
      if (!intact) {
        await cleanLeftovers(dir, s, sproutFileOf(o, dir));
        return undefined;
      }
      const names = await readdir(dir).catch(() => [] as string[]);
      // A copy the dead process left half done: the next hydration starts over, and needs the room.
      for (const n of names.filter((x) => x.endsWith(".part"))) await rm(join(dir, n), { force: true });
      const sources = names.filter((n) => /^nbd-\d+$/.test(n));
      const local = seedBacking === final;
      const oldDir = local ? undefined : dirname(seedBacking!);
      const entry: Entry = {
        opts: o,
        dir,
        nbd: oldDir ? adoptedConnection(o.uri, oldDir, seedBacking!) : undefined,
        sources: sources.length + 1,
        // Made by the attach when the source spoke TLS; the agent learns its own TLS files only
        // after adopting (setTls), so o.tls is no guide here.
        tlsDir: (await stat(join(dir, "tls-client")).catch(() => undefined))
          ? join(dir, "tls-client")
          : undefined,
        ownMountpoint: o.mountpoint === undefined,
        state: {
          ...s,
          phase: local ? "local" : "attached",
          transport: local ? "local" : s.transport === "local" ? "nbdfuse" : s.transport,
          uri: local ? "" : o.uri,
          seedBacking: seedBacking!,
          hydratedBytes: local ? s.sizeBytes : 0,
          message: "",
        },
      };
      if (!local) this.promised.set(o.key, { dir: o.stateDir, bytes: s.sizeBytes });
      if (o.tls && !local) await makeTlsDir(join(dir, "tls-client"), o.tls, "client").catch(() => undefined);
      this.entries.set(o.key, entry);
      return { ...entry.state };
    });
  }

  private async detachLocked(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e) return;
    const s = e.state;
    // a loop switch killed between its freeze and its thaw (loop.ts) leaves the sprout frozen, and a
    // frozen filesystem outlives its unmount (frozen for good, its loop devices held): thaw first
    // (refused harmlessly when it is not frozen)
    await run("fsfreeze", ["--unfreeze", s.mountpoint], { allowFailure: true });
    const um = await run("umount", [s.mountpoint], { allowFailure: true });
    if (um.exitCode !== 0 && /busy/i.test(um.stderr)) {
      throw failedPrecondition(`${s.mountpoint} is in use: stop the envs on ${key} first`, {
        reason: "ATTACHMENT_BUSY",
        subject: `attachment/${key}`,
        output: um.stderr,
      });
    }
    // Never delete below a mountpoint that is still mounted: that would delete the sprout's content.
    if (await isMountpoint(s.mountpoint)) {
      throw failedPrecondition(`${s.mountpoint} could not be unmounted: ${um.stderr.trim()}`, {
        reason: "UNMOUNT_FAILED",
        subject: `attachment/${key}`,
        output: um.stderr,
      });
    }
    for (const dev of [s.sproutLoop, s.seedLoop]) {
      await forgetBtrfsDevice(dev);
      await detachLoop(dev);
    }
    await e.nbd?.close();
    e.nbd = undefined;
    await e.dropping;
    await rm(e.dir, { recursive: true, force: true });
    await rm(sproutFileOf(e.opts, e.dir), { force: true });
    if (!e.ownMountpoint) await rmdir(s.mountpoint).catch(() => undefined);
    this.entries.delete(key);
    this.promised.delete(key);
  }

  /**
   * Starts the hydration copy's worker threads ahead of any push (the agent
   * calls this at start-up): started at attach time, six agents on one
   * 2-core box spent the CPU their attaches needed on starting workers.
   */
  warm(): void {
    if (copiesInPieces(CHECKSUM_ALGO, undefined)) warmCopyWorkers(copyThreads(DEFAULT_CONNECTIONS));
  }

  /** Detaches everything (agent shutdown, tests). */
  async close(): Promise<void> {
    for (const key of [...this.entries.keys()]) await this.detach(key);
  }

  private mustGet(key: string): Entry {
    const e = this.entries.get(key);
    if (!e)
      throw notFound(`no attachment ${key}`, {
        reason: "ATTACHMENT_NOT_FOUND",
        subject: `attachment/${key}`,
      });
    return e;
  }
}
