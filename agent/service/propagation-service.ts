/**
 * The agent's side of base propagation (DESIGN.md "Propagation"), over the
 * host drivers in host/exports, host/attachments and host/deltas:
 *
 *   seeds        base@N → sealed seed image, recorded beside it (<dir>/seeds/)
 *   exports      nbdkit serving a seed image, or the seed loop device of an
 *                attachment: an attached node can serve peers at once, and
 *                keeps serving through its own hydration (the loop device's
 *                backing switches underneath the server)
 *   attachments  lazy attach + background hydration; each registered with the
 *                pool as an external base version (envs are created on it at
 *                once), persisted in <dir>/attachments/<ref>.json and adopted
 *                or cleaned when the agent restarts
 *
 * Exports die with the agent (setpriv --pdeathsig): no orphan server keeps an
 * image open that no one tracks; the controller re-serves and re-attaches.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { formatBaseRef } from "../../common/base-ref.js";
import { Code, failedPrecondition, invalidArgument, notFound, ProtoctlError } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import { validateName } from "../../common/names.js";
import { requireRoom } from "../host/attachments/hydrate.js";
import { SeedAttachments } from "../host/attachments/seed-attachments.js";
import type { AgentAttachments, AttachmentState, AttachOptions } from "../host/attachments/types.js";
import { serveImage } from "../host/exports/nbd-server.js";
import { publishSeedImage } from "../host/exports/seed-image.js";
import type { ExportDriver, NbdExport, TlsFiles } from "../host/exports/types.js";
import type { BaseVersionMeta, ProgressFn } from "../host/interfaces.js";
import { findMount } from "../host/pool/mounts.js";
import { receiveVersion } from "./delta-receive.js";
import { readRecords, writeRecord } from "./propagation-records.js";
import {
  type AttachmentInfo,
  type AttachmentRecord,
  type AttachRequestInfo,
  attachOptionsFor,
  type ExportInfo,
  localAttachmentState,
  type PropagationOptions,
  roundMs,
  type SeedRecord,
} from "./propagation-types.js";
import { type Published, SeedPublisher } from "./seed-publisher.js";
import { mountSproutTmpfs } from "./sprout-tmpfs.js";

const refOf = formatBaseRef;

export class PropagationService {
  readonly attachments: AgentAttachments;
  private readonly exportDriver: ExportDriver;
  readonly seeds: SeedPublisher;
  private readonly exports = new Map<string, { exp: NbdExport; info: ExportInfo }>();
  private readonly records = new Map<string, AttachmentRecord>();
  private readonly sourceNodes = new Map<string, string>();
  /** Called when what the node holds changes (heartbeat refresh). */
  onChange: () => void = () => undefined;

  constructor(private readonly o: PropagationOptions) {
    this.attachments = o.attachments ?? new SeedAttachments();
    this.exportDriver = o.exports ?? { publish: publishSeedImage, serve: serveImage };
    this.seeds = new SeedPublisher({
      node: o.node,
      dir: join(o.dir, "seeds"),
      pool: o.pool,
      log: o.log,
      atSeal: o.publishAtSeal,
      publishImage: this.exportDriver.publish,
      activity: o.activity,
    });
  }

  private get seedDir() {
    return join(this.o.dir, "seeds");
  }
  private get attDir() {
    return join(this.o.dir, "attachments");
  }
  private get sproutDir() {
    return this.o.sproutTmpfsBytes ? join(this.o.dir, "sprouts") : undefined;
  }

  /** Loads seed records; adopts or cleans attachments left by a previous agent process. */
  async restore(): Promise<void> {
    await this.seeds.restore();
    await mkdir(this.attDir, { recursive: true });
    for (const { file: f, rec } of await readRecords<AttachmentRecord>(this.attDir)) {
      const ref = refOf(rec.base, rec.version);
      const got = await this.attachments
        .adopt(this.attachOptions(rec.base, rec.version, rec.state.uri, rec.seed), rec.state)
        .catch((err) => {
          this.o.log.warn({ ref, err: (err as Error).message }, "attachment not adopted");
          return undefined;
        });
      if (!got) {
        await rm(join(this.attDir, f), { force: true });
        this.o.log.info({ ref }, "stale attachment cleaned");
        continue;
      }
      this.records.set(ref, { ...rec, state: got });
      this.register(rec, got);
      this.o.log.info({ ref, phase: got.phase }, "attachment adopted");
    }
  }

  /**
   * After restore and once TLS is known: adopted attachments still on an NBD
   * client of the dead process get a fresh client from the same source, then
   * hydrate in the background. If the source is gone, the controller's push
   * re-attaches them elsewhere.
   */
  resume(): void {
    for (const [ref, rec] of this.records) {
      const s = this.attachments.get(ref);
      if (!s || s.phase === "local" || !rec.state.uri) continue;
      void this.attachments
        .switchSource(ref, rec.state.uri)
        .then(() => this.hydrate(ref))
        .catch((err) =>
          this.o.log.warn({ ref, err: (err as Error).message }, "re-attach after restart failed"),
        );
    }
  }

  private attachOptions(
    base: string,
    version: number,
    uri: string,
    seed: AttachmentRecord["seed"],
  ): AttachOptions {
    return attachOptionsFor(
      this.o,
      { stateDir: this.attDir, sproutDir: this.sproutDir },
      refOf(base, version),
      uri,
      seed,
    );
  }

  private register(rec: AttachmentRecord, s: AttachmentState): void {
    const ref = refOf(rec.base, rec.version);
    this.o.pool.registerExternalBase({
      meta: rec.meta,
      root: s.subvolumePath,
      envArea: join(s.mountpoint, "@env"),
      state: s.phase === "local" ? "hydrated" : "attached",
      release: () => this.detachNow(ref),
    });
  }

  // ---------------------------------------------------------------- seeds

  /**
   * The sealed seed image of base@N (version 0 = latest) for a PublishSeed
   * call: recorded, the rest of the one begun at seal, or made now.
   */
  async publish(
    base: string,
    version: number,
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<Published> {
    validateName("base", base);
    const meta = await this.o.pool.getBaseVersion(base, version);
    return this.seeds.publish(meta, progress, signal);
  }

  /** Before base@N (0: the latest) is deleted here: its publish begun at seal stops, its image goes. */
  async beforeDelete(base: string, version: number): Promise<void> {
    const meta = await this.o.pool.getBaseVersion(base, version).catch(() => undefined);
    if (meta) await this.seeds.beforeDelete(meta.base, meta.version);
  }

  /** base@N was just made here (build, import, update): its publish starts in the background. */
  sealed(meta: BaseVersionMeta): void {
    if (!this.o.pool.externalState(meta.base, meta.version)) this.seeds.sealed(meta);
  }

  /**
   * The seed image checksum this node holds base@N as: its attachment's (the
   * one the controller asked it to verify), else the image it published; ""
   * when it holds neither. Reported in the inventory, checked against the seal.
   */
  heldChecksum(base: string, version: number): string {
    const ref = refOf(base, version);
    return this.records.get(ref)?.seed.checksum || this.seeds.get(ref)?.checksum || "";
  }

  /** "attached" | "hydrated" for an attached version, "local" otherwise. */
  heldState(base: string, version: number): "local" | "attached" | "hydrated" {
    return this.o.pool.externalState(base, version) ?? "local";
  }

  /** Cluster TLS files, known once the agent has joined. */
  setTls(tls: TlsFiles | undefined): void {
    this.o.tls = tls;
    this.attachments.setTls(tls);
  }

  seed(base: string, version: number): SeedRecord | undefined {
    return this.seeds.get(refOf(base, version));
  }

  /** Deletes a seed image (garbage collection by the controller); its export stops first. */
  async deleteSeed(base: string, version: number): Promise<void> {
    const ref = refOf(base, version);
    const e = this.exports.get(ref);
    if (e?.exp.image.startsWith(this.seedDir)) await this.stopExport(base, version);
    await this.seeds.delete(base, version);
  }

  // ---------------------------------------------------------------- exports

  /**
   * Serves base@N: its seed image when this node published one, else the
   * seed loop device of its attachment (attached or hydrated). Idempotent.
   */
  async serve(
    base: string,
    version: number,
    opts: { port?: number; maxClients?: number; allow?: string[] } = {},
  ): Promise<ExportInfo> {
    validateName("base", base);
    const ref = refOf(base, version);
    const cur = this.exports.get(ref);
    if (cur?.exp.running) return cur.info;
    // A hydrated node serves its verified copy; an attached one its seed loop device (which
    // switches to the local copy underneath the server when hydration finishes).
    const att = this.attachments.get(ref);
    const image = this.seeds.get(ref)?.path ?? (att?.phase === "local" ? att.seedBacking : att?.seedLoop);
    if (!image) {
      throw notFound(`no seed image or attachment of ${ref} on ${this.o.node}`, {
        reason: "SEED_NOT_FOUND",
        subject: `base/${ref}`,
        hint: "publish the seed first (PublishSeed)",
      });
    }
    const exp = await this.exportDriver.serve({
      image,
      exportName: ref,
      bindAddress: this.o.bindAddress,
      port: opts.port || undefined,
      maxConnections: opts.maxClients || undefined,
      allow: this.o.tls ? opts.allow : undefined,
      tls: this.o.tls,
      stateDir: join(this.o.dir, "exports"),
      dieWithParent: true,
    });
    const info: ExportInfo = {
      base,
      version,
      uri: exp.uri,
      maxClients: opts.maxClients || 16,
      allow: opts.allow ?? [],
    };
    this.exports.set(ref, { exp, info });
    void exp.exited.then(() => {
      if (this.exports.get(ref)?.exp === exp) this.exports.delete(ref);
    });
    return info;
  }

  async stopExport(base: string, version: number): Promise<void> {
    const ref = refOf(base, version);
    const e = this.exports.get(ref);
    this.exports.delete(ref);
    await e?.exp.stop();
  }

  listExports(): ExportInfo[] {
    return [...this.exports.values()].filter((e) => e.exp.running).map((e) => e.info);
  }

  // ---------------------------------------------------------------- attachments

  /**
   * Attaches base@N from `uri` (or switches an existing attachment to it),
   * registers it with the pool, then optionally hydrates. `progress` sees
   * step "attached" once envs can be created, then "hydrating" fractions.
   */
  async attach(req: AttachRequestInfo, progress?: ProgressFn): Promise<AttachmentInfo> {
    validateName("base", req.base);
    if (!req.version) throw invalidArgument("attach needs a version", { reason: "VERSION_REQUIRED" });
    if (!req.uri) throw invalidArgument("attach needs a source URI", { reason: "URI_REQUIRED" });
    const ref = refOf(req.base, req.version);
    const local = await this.o.pool.getBaseVersion(req.base, req.version).catch(() => undefined);
    if (local && !this.o.pool.externalState(req.base, req.version)) {
      // Already a local subvolume: nothing to attach.
      progress?.({ step: "local", fraction: 1 });
      return this.localInfo(req.base, req.version);
    }
    let state = this.attachments.get(ref);
    if (!state) {
      progress?.({ step: "attaching" });
      await mountSproutTmpfs(this.sproutDir, this.o.sproutTmpfsBytes);
      state = await this.attachments.attach(this.attachOptions(req.base, req.version, req.uri, req.seed));
      this.o.log.info(
        { ref, source: req.sourceNode, transport: state.transport, timing: roundMs(state.attachTiming) },
        "attached",
      );
      const meta: BaseVersionMeta = req.meta ?? {
        base: req.base,
        version: req.version,
        source: `seed:${req.sourceNode}`,
        createdMs: Date.now(),
        recipeDigest: req.seed.checksum,
        sizeBytes: req.seed.sizeBytes,
      };
      const rec: AttachmentRecord = {
        base: req.base,
        version: req.version,
        sourceNode: req.sourceNode,
        seed: req.seed,
        meta,
        state,
      };
      this.records.set(ref, rec);
      this.register(rec, state);
      await this.persist(ref);
      this.onChange();
    } else if (state.phase !== "local" && state.uri !== req.uri) {
      progress?.({ step: "switching", message: `to ${req.uri}` });
      state = await this.attachments.switchSource(ref, req.uri);
      const rec = this.records.get(ref);
      if (rec) rec.sourceNode = req.sourceNode;
      await this.persist(ref);
    }
    this.sourceNodes.set(ref, req.sourceNode);
    progress?.({ step: "attached", fraction: 0 });
    if (req.hydrate && state.phase !== "local") {
      await this.hydrate(ref, progress).catch(async (err: unknown) => {
        await this.dropWhenFull(req.base, req.version, err);
        throw err;
      });
    }
    return this.info(ref);
  }

  /**
   * No room to hydrate (RESOURCE_EXHAUSTED): the attachment would stay on NBD, holding a sprout
   * and its source's export, for a version the node cannot hold; it goes unless envs read it.
   */
  private async dropWhenFull(base: string, version: number, err: unknown): Promise<void> {
    if (ProtoctlError.from(err).code !== Code.RESOURCE_EXHAUSTED) return;
    const ref = refOf(base, version);
    const users = await this.o.pool.usersOf(base, version).catch(() => ["?"]);
    if (users.length > 0) return this.o.log.warn({ ref, users }, "no room to hydrate; kept for its envs");
    await this.detach(base, version).catch((e: unknown) =>
      this.o.log.warn({ ref, err: (e as Error).message }, "no room to hydrate; detach failed"),
    );
    this.o.log.info({ ref }, "no room to hydrate: detached");
  }

  private async hydrate(ref: string, progress?: ProgressFn): Promise<void> {
    // The copy workers start with the hydration, not beside the attach: a push's targets attach
    // at once, and six agents starting theirs on a 2-core box took the CPU the attaches (what
    // "usable" waits for) needed. Not at boot either: ~23 MB for every agent that gets no push.
    this.attachments.warm();
    let lastPct = -1;
    const done = await this.attachments.hydrate(ref, {
      progress: (done, total) => {
        const pct = Math.floor((100 * done) / Math.max(1, total));
        if (pct === lastPct) return;
        lastPct = pct;
        progress?.({ step: "hydrating", fraction: done / Math.max(1, total) });
      },
    });
    if (done.hydration?.rehashed) {
      // The hash that follows nbdcopy assumes its work order (hydrate.ts); when it did not hold,
      // the finished file was hashed again: correct, slower. Worth knowing if it recurs.
      this.o.log.warn(
        { ref, timing: roundMs(done.hydration) },
        "hydrated; the following hash missed, hashed again",
      );
    } else this.o.log.info({ ref, timing: roundMs(done.hydration) }, "hydrated");
    const rec = this.records.get(ref);
    if (rec) this.o.pool.setExternalState(rec.base, rec.version, "hydrated");
    await this.persist(ref);
    this.onChange();
    progress?.({ step: "local", fraction: 1 });
  }

  private async persist(ref: string): Promise<void> {
    const rec = this.records.get(ref);
    const s = this.attachments.get(ref);
    if (!rec || !s) return;
    rec.state = s;
    await writeRecord(join(this.attDir, `${ref}.json`), rec);
  }

  info(ref: string): AttachmentInfo {
    const rec = this.records.get(ref);
    const s = this.attachments.get(ref);
    if (!rec || !s) {
      throw notFound(`no attachment ${ref} on ${this.o.node}`, {
        reason: "ATTACHMENT_NOT_FOUND",
        subject: `attachment/${ref}`,
      });
    }
    return {
      base: rec.base,
      version: rec.version,
      sourceNode: rec.sourceNode,
      checksum: rec.seed.checksum,
      state: s,
    };
  }

  private async localInfo(base: string, version: number): Promise<AttachmentInfo> {
    return {
      base,
      version,
      sourceNode: "",
      checksum: "",
      state: localAttachmentState(refOf(base, version), (await this.o.pool.baseRoot(base, version)).root),
    };
  }

  /** GetAttachment: the attachment, or a LOCAL answer when the version is a local subvolume. */
  async get(base: string, version: number): Promise<AttachmentInfo> {
    const ref = refOf(base, version);
    if (this.records.has(ref)) return this.info(ref);
    const local = await this.o.pool.getBaseVersion(base, version).catch(() => undefined);
    if (local) return this.localInfo(base, version);
    return this.info(ref);
  }

  listAttachments(): AttachmentInfo[] {
    return [...this.records.keys()].filter((r) => this.attachments.get(r)).map((r) => this.info(r));
  }

  /** Detach: refused while envs use the version; stops its export; forgets it everywhere. */
  async detach(base: string, version: number): Promise<void> {
    const ref = refOf(base, version);
    if (!this.records.has(ref)) return;
    const users = await this.o.pool.usersOf(base, version);
    if (users.length > 0) {
      throw failedPrecondition(`${ref} is in use by ${users.join(", ")}`, {
        reason: "BASE_IN_USE",
        subject: `attachment/${ref}`,
        hint: "delete those envs first",
      });
    }
    await this.detachNow(ref);
    this.o.pool.unregisterExternalBase(base, version);
    this.onChange();
  }

  private async detachNow(ref: string): Promise<void> {
    const e = this.exports.get(ref);
    if (e) {
      this.exports.delete(ref);
      await e.exp.stop();
    }
    await this.attachments.detach(ref);
    this.records.delete(ref);
    await rm(join(this.attDir, `${ref}.json`), { force: true });
  }

  /** Root subvolume of base@N, local or attached. */
  rootOf(base: string, version: number) {
    return this.o.pool.baseRoot(base, version);
  }

  /** Puts a version received from a peer into the pool (delta-receive.ts). */
  receive(
    meta: BaseVersionMeta,
    fill: (dir: string) => Promise<void>,
    parentVersion = 0,
  ): Promise<BaseVersionMeta> {
    return receiveVersion({ pool: this.o.pool, log: this.o.log }, meta, fill, parentVersion);
  }

  /** Free room check for a delta receive (the pool's own ENOSPC handling covers the rest). */
  async requireRoom(bytes: number): Promise<void> {
    await requireRoom(this.o.dir, bytes, "the received version");
  }

  /** Stops exports (they die with us anyway); attachments stay mounted for running envs. */
  async close(): Promise<void> {
    await this.seeds.close();
    for (const e of this.exports.values()) await e.exp.stop().catch(() => undefined);
    this.exports.clear();
  }

  /** Detaches everything (tests, `protoctl down`): envs on attached versions must be gone. */
  async destroy(): Promise<void> {
    await this.close();
    for (const ref of [...this.records.keys()]) {
      const rec = this.records.get(ref)!;
      await this.detachNow(ref).catch((err) => {
        throw new ProtoctlError(Code.FAILED_PRECONDITION, `detach ${ref}: ${(err as Error).message}`);
      });
      this.o.pool.unregisterExternalBase(rec.base, rec.version);
    }
    const dir = this.sproutDir;
    if (dir && (await findMount(dir))) await run("umount", [dir]);
  }
}
