/**
 * PushBase: spread base@N to the nodes that lack it (issue 6).
 *
 *   origin   a ready node holding the version as a local subvolume publishes
 *            its seed image once (recorded in etcd `seeds/`) and serves it
 *   seed     each target attaches lazily from a source SourcePicker picks
 *            (holders first, many peers per source: usable at once), then
 *            copies the whole image from a holder once every target of the
 *            push is attached (at most k copies per holder at once; the agent
 *            switches its seed loop device to that holder live) and becomes a
 *            holder itself; a target whose source
 *            dies is moved to another source; with none left it fails clearly
 *   delta    a target holding @N-1 gets `btrfs send -p @N-1 @N` from the
 *            origin, piped through this controller (SendDelta → ReceiveDelta);
 *            if the target's @N-1 is not of the same lineage, seed instead.
 *            Chosen where both hold @N-1 in their pools; with transport
 *            "delta" also into a target holding @N-1 as a hydrated seed (it
 *            copies @N-1 into its pool first, once), or only attached (its
 *            hydration is waited for first)
 *
 * Progress per node streams as PushProgress (attached, hydrating x%, local,
 * failed). Exports and attachments are recorded in etcd; when every target
 * is local the exports stop and the seed image is garbage-collected.
 */

import { ProtoctlError } from "../../common/errors.js";
import { fromServiceError } from "../../common/grpc.js";
import { validateName } from "../../common/names.js";
import type { PushBaseRequest } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase, type BaseVersion, type SeedImage } from "../../proto/gen/protoctl/v1/types.js";
import { pipeChunks } from "../agents/relay.js";
import type { ControllerContext } from "../context.js";
import { latestVersion, readHoldings, sealOf } from "./holdings.js";
import {
  chooseOrigin,
  chooseTransport,
  DEFAULT_FANOUT,
  maxClients,
  pushError,
  resolveTargets,
  splitTargets,
} from "./plan.js";
import { type PushHooks, type PushRun, type PushSink, progress, reportSeedWait } from "./run.js";
import { SeedTransport } from "./seed-transport.js";
import { SeedKeeper } from "./seeds.js";
import { SourcePicker } from "./sources.js";

export type { PushHooks, PushSink, SeedWait } from "./run.js";

/** Key of a target's run in `inflight`: "base@N/node". */
const inflightKey = (ref: string, node: string) => `${ref}/${node}`;

export class Propagator {
  /** Per "base@N/node": the running push to that node (two pushes never race on one target). */
  private readonly inflight = new Map<string, Promise<void>>();
  /** Per "base@N/node": resolves once that running push made the target usable (or failed). */
  private readonly usableAt = new Map<string, Promise<void>>();
  /** Pushes per "base@N" that have not yet registered their targets. */
  private readonly starting = new Map<string, number>();
  readonly seeds: SeedKeeper;
  private readonly transport: SeedTransport;

  /**
   * @param parentPush makes base@N local on a node (a delta's parent): the owner records it as
   *   an operation of its own and waits for it.
   */
  constructor(
    private readonly ctx: ControllerContext,
    private readonly parentPush: (base: string, version: number, node: string) => Promise<void>,
  ) {
    this.seeds = new SeedKeeper(ctx, {
      starting: (ref) => (this.starting.get(ref) ?? 0) > 0,
      running: (ref) => [...this.inflight.keys()].some((k) => k.startsWith(inflightKey(ref, ""))),
    });
    this.transport = new SeedTransport(ctx, this.seeds);
  }

  /** Runs a push; resolves when every target is usable (or local with waitLocal) or failed. */
  async push(req: PushBaseRequest, sink: PushSink, hooks: PushHooks = {}): Promise<void> {
    // `done` is the last message: targets keep hydrating (and reporting) after a push that
    // returns once they are usable, but what they report then is not this caller's business.
    let open = true;
    const send: PushSink = (p) => {
      if (!open) return;
      if (p.done) open = false;
      sink(p);
    };
    const base = validateName("base", req.ref?.name);
    const version = req.ref?.version || (await latestVersion(this.ctx, base));
    const ref = `${base}@${version}`;
    await this.seeds.collecting.get(ref);
    this.starting.set(ref, (this.starting.get(ref) ?? 0) + 1);
    let started = false;
    try {
      await this.pushRef(req, send, hooks, base, version, ref, () => {
        if (!started) this.starting.set(ref, (this.starting.get(ref) ?? 1) - 1);
        started = true;
      });
    } finally {
      if (!started) this.starting.set(ref, (this.starting.get(ref) ?? 1) - 1);
    }
  }

  private async pushRef(
    req: PushBaseRequest,
    send: PushSink,
    hooks: PushHooks,
    base: string,
    version: number,
    ref: string,
    registered: () => void,
  ): Promise<void> {
    const holds = await readHoldings(this.ctx, base);
    const targets = resolveTargets(holds, req.nodes, req.selector);
    // Only a version the controller sealed is pushed, and only from its origin or from nodes
    // holding the image the seal names (readHoldings leaves foreign reports out).
    const seal = await sealOf(this.ctx, base, version);
    const recorded = (await this.ctx.store.listSeeds()).find(
      (x) => x.value.base === base && x.value.version === version,
    )?.value;
    const origin = chooseOrigin(holds, ref, version, seal, recorded?.checksum);
    const holders = [...holds.entries()]
      .filter(([, h]) => h.ready && h.versions.has(version))
      .map(([n]) => n);
    const k = req.fanout > 0 ? req.fanout : DEFAULT_FANOUT;
    const picker = new SourcePicker(k);
    const { todo, attached, local } = splitTargets(holds, targets, version, req.waitLocal);
    for (const t of local) send(progress(t, AttachmentPhase.ATTACHMENT_PHASE_LOCAL, { fraction: 1 }));
    await this.markLocal(base, version, local);
    for (const t of attached) send(progress(t, AttachmentPhase.ATTACHMENT_PHASE_ATTACHED));
    // Sources of the seed: the node whose image the seed record names, and nodes hydrated from
    // that very image (a republished seed is another image: older copies cannot serve it).
    let seed: SeedImage | undefined;
    if (todo.length > 0 && req.transport !== "delta") {
      const addSources = (sd: SeedImage) => {
        for (const h of holders) {
          if (h === sd.node || holds.get(h)!.imageSum.get(version) === sd.checksum) picker.addHolder(h);
        }
      };
      const t0 = performance.now();
      seed = await this.seeds.seed(base, version, origin, false);
      addSources(seed);
      if (!holders.some((h) => picker.usable(h, ""))) {
        seed = await this.seeds.seed(base, version, origin, true);
        addSources(seed);
      }
      reportSeedWait(send, hooks, seed, recorded, seal.checksum, performance.now() - t0);
    }
    const ctx: PushRun = {
      base,
      version,
      ref,
      origin,
      picker,
      holds,
      send,
      seed,
      maxClients: maxClients(picker.lazyK, k, todo.length),
      exports: new Map(),
      transport: req.transport,
      allAttached: Promise.resolve(),
    };
    const usable: Array<Promise<void>> = [];
    const ownAttached: Array<Promise<void>> = [];
    const all: Array<Promise<void>> = [];
    const failures: Array<{ node: string; err: ProtoctlError }> = [];
    for (const t of todo) {
      let markUsable!: () => void;
      const u = new Promise<void>((r) => {
        markUsable = r;
      });
      const key = inflightKey(ref, t);
      const running = this.inflight.get(key);
      const run =
        running ??
        this.pushOne(ctx, t, markUsable).finally(() => {
          if (this.inflight.get(key) === run) {
            this.inflight.delete(key);
            this.usableAt.delete(key);
          }
        });
      this.inflight.set(key, run);
      if (!running) this.usableAt.set(key, u);
      // Joined another push's run (the scheduler's hook joins the push that is attaching the
      // version there): usable when that run makes it usable, not when its copy ends.
      void this.usableAt.get(key)?.then(() => markUsable());
      const settled = run.then(
        () => {
          // Joined another push's run: its progress went to that caller; report the outcome here.
          if (running) send(progress(t, AttachmentPhase.ATTACHMENT_PHASE_LOCAL, { fraction: 1 }));
          markUsable();
        },
        (err) => {
          const pe = ProtoctlError.from(err);
          failures.push({ node: t, err: pe });
          hooks.failed?.(t, pe);
          markUsable();
        },
      );
      void u.then(() => hooks.usable?.(t));
      usable.push(u);
      if (!running) ownAttached.push(u);
      all.push(settled);
    }
    ctx.allAttached = Promise.all(ownAttached).then(() => undefined);
    registered();
    const finished = Promise.all(all).then(async () => {
      // Retried while heartbeats catch up (a node may still report the version as attached).
      for (let i = 0; i < 20 && !(await this.seeds.collectGarbage(base, version)); i++) {
        if (failures.length > 0) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      // Images of older versions of this base are garbage once nothing reads them.
      for (const s of await this.ctx.store.listSeeds()) {
        if (s.value.base === base && s.value.version < version && s.value.node) {
          await this.seeds.collectGarbage(base, s.value.version);
        }
      }
    });
    finished.catch((err) => this.ctx.log.warn({ ref, err: (err as Error).message }, "push cleanup failed"));

    await Promise.all(req.waitLocal ? all : usable);
    if (req.waitLocal) await finished.catch(() => undefined);
    // Let failures that happened by now settle into `failures` (usable resolves first).
    await new Promise((r) => setImmediate(r));
    send(progress("", AttachmentPhase.ATTACHMENT_PHASE_UNSPECIFIED, { done: true }));
    if (failures.length > 0) {
      // One code for the call: the failures' own when they agree (a full pool → RESOURCE_EXHAUSTED).
      throw pushError(ref, failures);
    }
  }

  private async pushOne(r: PushRun, target: string, markUsable: () => void): Promise<void> {
    const parent = r.version - 1;
    const tv = r.holds.get(target)?.versions;
    const ov = r.holds.get(r.origin)?.versions;
    const choice = chooseTransport(
      r.transport,
      r.version,
      tv,
      ov,
      r.transport === "delta" && (await this.attachedNotLocal(r.base, parent, target)),
    );
    // An asked-for delta onto a parent the target holds only attached (read over NBD): the delta
    // needs the whole parent on the node, so the parent's hydration comes first (its own
    // operation: joins the push still hydrating it, or starts one).
    if (choice.parentFirst) {
      r.send(
        progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHING, {
          message: `waiting for @${parent} to hydrate (the delta's parent)`,
        }),
      );
      try {
        await this.parentPush(r.base, parent, target);
      } catch (err) {
        const pe = ProtoctlError.from(err);
        r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: pe.message }));
        throw pe;
      }
    }
    if (choice.delta) {
      try {
        await this.delta(r, target, choice.parentVersion);
        markUsable();
        return;
      } catch (err) {
        const pe = ProtoctlError.from(err);
        if (r.transport === "delta" || pe.reason !== "PARENT_MISSING") {
          r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: pe.message }));
          throw pe;
        }
        r.send(
          progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHING, {
            message: "delta parent differs: seed instead",
          }),
        );
      }
    }
    await this.transport.push(r, target, markUsable);
  }

  /**
   * Whether base@version is attached to `node` and not hydrated yet, by what this controller knows
   * before the node's heartbeat says so: a push still at it, or its attachment record.
   */
  private async attachedNotLocal(base: string, version: number, node: string): Promise<boolean> {
    if (this.inflight.has(inflightKey(`${base}@${version}`, node))) return true;
    const atts = await this.ctx.store.listAttachments();
    return atts.some(
      ({ value: a }) =>
        a.base === base &&
        a.version === version &&
        a.node === node &&
        (a.phase === AttachmentPhase.ATTACHMENT_PHASE_ATTACHED ||
          a.phase === AttachmentPhase.ATTACHMENT_PHASE_HYDRATING),
    );
  }

  private async delta(r: PushRun, target: string, parentVersion: number): Promise<void> {
    const src = await this.ctx.agents.forNode(this.ctx.store, r.origin);
    const dst = await this.ctx.agents.forNode(this.ctx.store, target);
    r.send(
      progress(target, AttachmentPhase.ATTACHMENT_PHASE_HYDRATING, {
        sourceNode: r.origin,
        message: parentVersion ? `btrfs send -p @${parentVersion}` : "btrfs send (full)",
      }),
    );
    const up = src.sendDelta({ ref: { name: r.base, version: r.version }, parentVersion });
    const result = new Promise<BaseVersion>((resolve, reject) => {
      const down = dst.receiveDelta((err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
      pipeChunks(up, down, (e) => reject(fromServiceError(e as never)));
    });
    await result;
    // The delta came from the origin's pool through this controller: the target holds the sealed version.
    await this.seeds.addHolder(r.base, r.version, target);
    r.send(
      progress(target, AttachmentPhase.ATTACHMENT_PHASE_LOCAL, {
        fraction: 1,
        sourceNode: r.origin,
        message: "delta",
      }),
    );
  }

  /**
   * Targets that hydrated on their own (the agent goes on copying while no leader runs): the
   * pass finds them local by inventory, and their attachment records say so too, so nothing
   * reads them as still attached (export garbage, `base describe`).
   */
  private async markLocal(base: string, version: number, nodes: string[]): Promise<void> {
    if (nodes.length === 0) return;
    const want = new Set(nodes);
    for (const { value: a } of await this.ctx.store.listAttachments()) {
      if (a.base !== base || a.version !== version || !want.has(a.node)) continue;
      if (a.phase === AttachmentPhase.ATTACHMENT_PHASE_LOCAL) continue;
      await this.ctx.store.putAttachment({
        ...a,
        phase: AttachmentPhase.ATTACHMENT_PHASE_LOCAL,
        hydratedFraction: 1,
        message: "",
      });
    }
  }
}
