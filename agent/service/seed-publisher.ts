/**
 * Seed images of this node's own versions (base@N → sealed image, recorded
 * beside it in <dir>/*.json), made once.
 *
 * Publish at seal (issue 20 item 5): a version this node just made (build,
 * import, update) starts its publish in the background at once, so a push
 * right after finds the image made or waits only for the rest of it. The
 * seal's checksum is still bound by the controller's first PublishSeed (it
 * records what that call returns); until then the image is "unclaimed": no
 * one reads it, and it is this node's to drop. An unclaimed image goes when
 * its version is deleted (an unfinished publish is aborted first: its send
 * must not hold the subvolume) or when a newer version of the base is sealed
 * here; a claimed one stays under the controller's garbage collection.
 *
 * With a ForegroundActivity, the publish at seal waits for a quiet moment:
 * quietMs after the seal and after the last env create ends (at most
 * maxDeferMs after the seal), because it competes with the creates for disk
 * and CPU (foreground.ts says by how much). A push for a version still
 * waiting starts its publish at once.
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { formatBaseRef } from "../../common/base-ref.js";
import { failedPrecondition } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import { publishSeedImage } from "../host/exports/seed-image.js";
import type { BaseVersionMeta, ProgressFn } from "../host/interfaces.js";
import { findMount } from "../host/pool/mounts.js";
import type { ForegroundActivity } from "./foreground.js";
import { readRecords, writeRecord } from "./propagation-records.js";
import type { PropagationPool, SeedRecord } from "./propagation-types.js";

interface Publishing {
  base: string;
  version: number;
  done: Promise<SeedRecord>;
  abort: AbortController;
  atSeal: boolean;
  claimed: boolean;
}

export interface SeedPublisherOptions {
  node: string;
  /** <propagation dir>/seeds */
  dir: string;
  pool: PropagationPool;
  log: Logger;
  /** Publish each version made here in the background (default true). */
  atSeal?: boolean;
  /** Makes the image (the export driver's publish; a fake in unit tests). */
  publishImage?: typeof publishSeedImage;
  /** Foreground work (env creates) the publish at seal gives way to. */
  activity?: ForegroundActivity;
  /** Quiet time after the seal and after the last create before a publish at seal begins (1500). */
  quietMs?: number;
  /** Longest a publish at seal waits for a quiet moment (60 s). */
  maxDeferMs?: number;
}

interface Deferred {
  meta: BaseVersionMeta;
  sinceMs: number;
  timer?: NodeJS.Timeout;
}

/** What a PublishSeed caller gets: the record, and whether the image was begun at seal. */
export interface Published {
  rec: SeedRecord;
  atSeal: boolean;
}

export class SeedPublisher {
  private readonly records = new Map<string, SeedRecord>();
  private readonly running = new Map<string, Publishing>();
  private readonly deferred = new Map<string, Deferred>();
  private readonly unwatch?: () => void;

  constructor(private readonly o: SeedPublisherOptions) {
    this.unwatch = o.activity?.onEnd(() => {
      for (const ref of [...this.deferred.keys()]) this.schedule(ref);
    });
  }

  /** Loads the records; what a killed publish left (its mount, its temporary image) goes. */
  async restore(): Promise<void> {
    await mkdir(this.o.dir, { recursive: true });
    for (const f of await readdir(this.o.dir)) {
      const p = join(this.o.dir, f);
      if (f.startsWith(".seed-mnt-") && (await findMount(p))) await run("umount", [p]);
    }
    for (const { rec } of await readRecords<SeedRecord>(this.o.dir))
      this.records.set(formatBaseRef(rec.base, rec.version), rec);
  }

  get(ref: string): SeedRecord | undefined {
    return this.records.get(ref);
  }

  /** The seed of base@N for a PublishSeed call (which claims it): recorded, being made, or made now. */
  async publish(meta: BaseVersionMeta, progress?: ProgressFn, signal?: AbortSignal): Promise<Published> {
    const ref = formatBaseRef(meta.base, meta.version);
    const have = this.records.get(ref);
    if (have) return { rec: await this.claim(ref, have), atSeal: !!have.atSeal };
    const waiting = this.deferred.get(ref);
    if (waiting) {
      // a push does not wait for the quiet moment: it starts the publish now, as its own
      clearTimeout(waiting.timer);
      this.deferred.delete(ref);
    }
    let p = this.running.get(ref);
    if (p) progress?.({ step: p.atSeal ? "publish: finishing the image begun at seal" : "publish: joining" });
    else p = this.start(meta, false, progress, signal);
    p.claimed = true;
    const joined = p;
    const rec = await p.done.catch((err) => {
      // A publish begun at seal that failed on its own (not stopped): this call makes the image.
      if (!joined.atSeal || joined.abort.signal.aborted) throw err;
      this.o.log.warn({ ref, err: (err as Error).message }, "publish at seal failed; publishing again");
      const again = this.records.get(ref);
      if (again) return again;
      return (this.running.get(ref) ?? this.start(meta, false, progress, signal)).done;
    });
    return { rec: await this.claim(ref, rec), atSeal: p.atSeal && rec.atSeal === true };
  }

  /** A version was made here: publish it in the background; unclaimed older images of the base go. */
  sealed(meta: BaseVersionMeta): void {
    if (this.o.atSeal === false) return;
    const ref = formatBaseRef(meta.base, meta.version);
    if (this.records.has(ref) || this.running.has(ref) || this.deferred.has(ref)) return;
    void this.dropUnclaimed(meta.base, (v) => v < meta.version);
    if (!this.o.activity) {
      this.beginAtSeal(meta);
      return;
    }
    this.deferred.set(ref, { meta, sinceMs: Date.now() });
    this.schedule(ref);
  }

  /** Begins base@N's deferred publish once quiet (or at its deadline), else re-arms its timer. */
  private schedule(ref: string): void {
    const d = this.deferred.get(ref);
    if (!d || !this.o.activity) return;
    clearTimeout(d.timer);
    const now = Date.now();
    const quietMs = this.o.quietMs ?? 1500;
    const untilDeadline = Math.max(0, d.sinceMs + (this.o.maxDeferMs ?? 60_000) - now);
    const untilQuiet = Math.max(this.o.activity.untilQuiet(quietMs, now), d.sinceMs + quietMs - now);
    const wait = Math.min(untilQuiet, untilDeadline);
    if (wait <= 0) {
      this.deferred.delete(ref);
      this.beginAtSeal(d.meta);
      return;
    }
    d.timer = setTimeout(() => this.schedule(ref), wait);
    d.timer.unref();
  }

  private beginAtSeal(meta: BaseVersionMeta): void {
    const ref = formatBaseRef(meta.base, meta.version);
    const t0 = performance.now();
    this.start(meta, true).done.then(
      (rec) =>
        this.o.log.info(
          { ref, bytes: rec.sizeBytes, ms: Math.round(performance.now() - t0) },
          "seed published at seal",
        ),
      (err) => this.o.log.info({ ref, err: (err as Error).message }, "publish at seal stopped"),
    );
  }

  /**
   * Before base@N is deleted here: its unclaimed publish stops and its
   * unclaimed image goes. Claimed ones are the controller's.
   */
  beforeDelete(base: string, version: number): Promise<void> {
    return this.dropUnclaimed(base, (v) => v === version);
  }

  /** Deletes the image and record of base@N (the controller's garbage collection). */
  async delete(base: string, version: number): Promise<void> {
    const ref = formatBaseRef(base, version);
    this.records.delete(ref);
    await rm(join(this.o.dir, `${ref}.img`), { force: true });
    await rm(join(this.o.dir, `${ref}.json`), { force: true });
  }

  /** Stops every publish under way and waits for each to clean up after itself. */
  async close(): Promise<void> {
    this.unwatch?.();
    for (const d of this.deferred.values()) clearTimeout(d.timer);
    this.deferred.clear();
    const all = [...this.running.values()];
    for (const p of all) p.abort.abort();
    await Promise.allSettled(all.map((p) => p.done));
  }

  /** Whether a publish of base@N is under way (tests, the agent's inventory). */
  publishing(base: string, version: number): boolean {
    return this.running.has(formatBaseRef(base, version));
  }

  private async dropUnclaimed(base: string, which: (version: number) => boolean): Promise<void> {
    for (const [ref, d] of [...this.deferred]) {
      if (d.meta.base === base && which(d.meta.version)) {
        clearTimeout(d.timer);
        this.deferred.delete(ref);
      }
    }
    const stopping = [...this.running.values()].filter(
      (p) => p.base === base && which(p.version) && p.atSeal && !p.claimed,
    );
    for (const p of stopping) p.abort.abort();
    await Promise.allSettled(stopping.map((p) => p.done));
    for (const rec of [...this.records.values()]) {
      if (rec.base === base && which(rec.version) && rec.atSeal && !rec.claimed) {
        await this.delete(rec.base, rec.version);
        this.o.log.info({ ref: formatBaseRef(rec.base, rec.version) }, "unclaimed seed image dropped");
      }
    }
  }

  private async claim(ref: string, rec: SeedRecord): Promise<SeedRecord> {
    if (rec.claimed || !rec.atSeal) return rec;
    const claimed = { ...rec, claimed: true };
    this.records.set(ref, claimed);
    await writeRecord(join(this.o.dir, `${ref}.json`), claimed);
    return claimed;
  }

  private start(meta: BaseVersionMeta, atSeal: boolean, progress?: ProgressFn, signal?: AbortSignal) {
    const ref = formatBaseRef(meta.base, meta.version);
    const abort = new AbortController();
    // A push's publish stops with its call; one begun at seal only when its version goes.
    signal?.addEventListener("abort", () => abort.abort(signal.reason), { once: true });
    const p: Publishing = {
      base: meta.base,
      version: meta.version,
      atSeal,
      claimed: !atSeal,
      abort,
      done: this.make(meta, atSeal, () => p.claimed, progress, abort.signal).finally(() => {
        if (this.running.get(ref) === p) this.running.delete(ref);
      }),
    };
    this.running.set(ref, p);
    p.done.catch(() => undefined);
    return p;
  }

  private async make(
    meta: BaseVersionMeta,
    atSeal: boolean,
    claimed: () => boolean,
    progress: ProgressFn | undefined,
    signal: AbortSignal,
  ): Promise<SeedRecord> {
    const ref = formatBaseRef(meta.base, meta.version);
    if (this.o.pool.externalState(meta.base, meta.version)) {
      throw failedPrecondition(`${ref} is attached here, not local: publish it on its origin`, {
        reason: "NOT_LOCAL",
        subject: `base/${ref}`,
      });
    }
    const { root } = await this.o.pool.baseRoot(meta.base, meta.version);
    const image = join(this.o.dir, `${ref}.img`);
    await rm(image, { force: true });
    const seed = await (this.o.publishImage ?? publishSeedImage)(root, image, {
      signal,
      progress: (p) => progress?.({ step: `publish ${p.step}`, fraction: p.fraction }),
    });
    if (signal.aborted) {
      // Aborted after the last step: the image must not outlive the request that stopped it.
      await rm(image, { force: true });
      throw signal.reason ?? new Error("aborted");
    }
    const rec: SeedRecord = {
      ...seed,
      base: meta.base,
      version: meta.version,
      createdMs: Date.now(),
      node: this.o.node,
      atSeal,
      claimed: claimed(),
    };
    await writeRecord(join(this.o.dir, `${ref}.json`), rec);
    this.records.set(ref, rec);
    return rec;
  }
}
