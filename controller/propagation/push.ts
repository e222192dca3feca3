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
import { type ClientReadableStream, Metadata } from "@grpc/grpc-js";
import { Code, failedPrecondition, ProtoctlError, unavailable } from "../../common/errors.js";
import { fromServiceError } from "../../common/grpc.js";
import { validateName } from "../../common/names.js";
import type { AgentServiceClient, DeltaChunk } from "../../proto/gen/protoctl/v1/agent.js";
import type { PushBaseRequest, PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import {
  type Attachment,
  AttachmentPhase,
  type BaseVersion,
  BaseVersionState,
  NodeState,
  type OperationEvent,
  type SeedImage,
} from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { reclassify } from "../membership/inventory.js";
import { agentFor } from "../server/env-api.js";
import { listNodes } from "../server/node-api.js";
import { SourcePicker, type SourceUse } from "./sources.js";

export const DEFAULT_FANOUT = 2;
/** NBD connections one peer may hold on a source: nbdfuse -C 4 plus nbdcopy --connections=4. */
const CONNECTIONS_PER_PEER = 8;
const MAX_ATTEMPTS = 6;
/** How long a push waits for a target whose agent stopped answering (a restart) before failing it. */
const TARGET_RETURN_MS = 60_000;

export type PushSink = (p: PushProgress) => void;

interface NodeHold {
  /** Checksum of the seed image a hydrated node holds, per version. */
  imageSum: Map<number, string>;
  state: BaseVersionState;
  ready: boolean;
  labels: Record<string, string>;
  versions: Map<number, BaseVersionState>;
}

const progress = (node: string, phase: AttachmentPhase, extra: Partial<PushProgress> = {}): PushProgress => ({
  node,
  phase,
  fraction: 0,
  sourceNode: "",
  message: "",
  done: false,
  ...extra,
});

/** Key of a target's run in `inflight`: "base@N/node". */
const inflightKey = (ref: string, node: string) => `${ref}/${node}`;

function collect<T>(stream: ClientReadableStream<T>, on: (m: T) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.on("data", on);
    stream.on("error", (e) => reject(fromServiceError(e)));
    stream.on("end", () => resolve());
  });
}

/** Attachment phases a push has not finished with. */
const UNFINISHED = new Set([
  AttachmentPhase.ATTACHMENT_PHASE_ATTACHING,
  AttachmentPhase.ATTACHMENT_PHASE_ATTACHED,
  AttachmentPhase.ATTACHMENT_PHASE_HYDRATING,
]);

export class Propagator {
  /** Per "base@N/node": the running push to that node (two pushes never race on one target). */
  private readonly inflight = new Map<string, Promise<void>>();
  /** Per "base@N/node": resolves once that running push made the target usable (or failed). */
  private readonly usableAt = new Map<string, Promise<void>>();
  /** Per "base@N": the seed being published. */
  private readonly seeds = new Map<string, Promise<SeedImage>>();

  /** Pushes per "base@N" that have not yet registered their targets, and a running collection. */
  private readonly starting = new Map<string, number>();
  private readonly collecting = new Map<string, Promise<unknown>>();

  constructor(private readonly ctx: ControllerContext) {}

  /** Runs a push; resolves when every target is usable (or local with waitLocal) or failed. */
  async push(req: PushBaseRequest, sink: PushSink): Promise<void> {
    // `done` is the last message: targets keep hydrating (and reporting) after a push that
    // returns once they are usable, but what they report then is not this caller's business.
    let open = true;
    const send: PushSink = (p) => {
      if (!open) return;
      if (p.done) open = false;
      sink(p);
    };
    const base = validateName("base", req.ref?.name);
    const version = req.ref?.version || (await this.latest(base));
    const ref = `${base}@${version}`;
    await this.collecting.get(ref);
    this.starting.set(ref, (this.starting.get(ref) ?? 0) + 1);
    let started = false;
    try {
      await this.pushRef(req, send, base, version, ref, () => {
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
    base: string,
    version: number,
    ref: string,
    registered: () => void,
  ): Promise<void> {
    const holds = await this.inventory(base);
    const ready = [...holds.entries()].filter(([, h]) => h.ready);
    let targets: string[];
    if (req.nodes.length > 0) {
      for (const n of req.nodes) validateName("node", n);
      const missing = req.nodes.filter((n) => !holds.get(n)?.ready);
      if (missing.length) {
        throw unavailable(`node(s) not Ready: ${missing.join(", ")}`, {
          reason: "NODE_NOT_READY",
          hint: "see `protoctl node ls`",
        });
      }
      targets = [...new Set(req.nodes)];
    } else {
      const sel = Object.entries(req.selector);
      targets = ready.filter(([, h]) => sel.every(([k, v]) => h.labels[k] === v)).map(([n]) => n);
      if (targets.length === 0 && sel.length > 0) {
        const want = sel.map(([k, v]) => `${k}=${v}`).join(",");
        throw failedPrecondition(`no ready node matches ${want}`, {
          reason: "NO_TARGETS",
          hint: "see the labels in `protoctl node ls -o wide`",
        });
      }
    }
    // Only a version the controller sealed is pushed, and only from its origin or from nodes
    // holding the image the seal names (inventory() already leaves foreign reports out).
    const seal = await this.sealOf(base, version);
    const holders = ready.filter(([, h]) => h.versions.has(version)).map(([n]) => n);
    let origin = ready.find(
      ([n, h]) =>
        (!seal.origin || n === seal.origin) &&
        h.versions.get(version) === BaseVersionState.BASE_VERSION_STATE_LOCAL,
    )?.[0];
    if (!origin) {
      // The origin may be gone while nodes hydrated from its published seed still serve that image.
      const sd = (await this.ctx.store.listSeeds()).find(
        (x) => x.value.base === base && x.value.version === version,
      )?.value;
      const sum = seal.checksum || sd?.checksum;
      if (sum) origin = ready.find(([, h]) => h.imageSum.get(version) === sum)?.[0];
    }
    if (!origin) {
      throw failedPrecondition(`no ready node holds ${ref} as a local version`, {
        reason: "NO_ORIGIN",
        subject: `base/${ref}`,
        hint: "import, build or update the base on a node first",
      });
    }
    const k = req.fanout > 0 ? req.fanout : DEFAULT_FANOUT;
    const picker = new SourcePicker(k);
    const todo: string[] = [];
    for (const t of targets) {
      const st = holds.get(t)?.versions.get(version);
      if (st === undefined || st === BaseVersionState.BASE_VERSION_STATE_ATTACHED) {
        if (st === undefined || req.waitLocal) todo.push(t);
        else send(progress(t, AttachmentPhase.ATTACHMENT_PHASE_ATTACHED));
      } else send(progress(t, AttachmentPhase.ATTACHMENT_PHASE_LOCAL, { fraction: 1 }));
    }
    // Sources of the seed: the node whose image the seed record names, and nodes hydrated from
    // that very image (a republished seed is another image: older copies cannot serve it).
    let seed: SeedImage | undefined;
    if (todo.length > 0 && req.transport !== "delta") {
      const addSources = (sd: SeedImage) => {
        for (const h of holders) {
          if (h === sd.node || holds.get(h)!.imageSum.get(version) === sd.checksum) picker.addHolder(h);
        }
      };
      seed = await this.seed(base, version, origin, false);
      addSources(seed);
      if (!holders.some((h) => picker.usable(h, ""))) {
        seed = await this.seed(base, version, origin, true);
        addSources(seed);
      }
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
      // every target may read lazily from one source at once, some of them copying too
      maxClients: CONNECTIONS_PER_PEER * Math.min(picker.lazyK + k, Math.max(1, todo.length)) + 8,
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
          failures.push({ node: t, err: ProtoctlError.from(err) });
          markUsable();
        },
      );
      usable.push(u);
      if (!running) ownAttached.push(u);
      all.push(settled);
    }
    ctx.allAttached = Promise.all(ownAttached).then(() => undefined);
    registered();
    const finished = Promise.all(all).then(async () => {
      // Retried while heartbeats catch up (a node may still report the version as attached).
      for (let i = 0; i < 20 && !(await this.collectGarbage(base, version)); i++) {
        if (failures.length > 0) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      // Images of older versions of this base are garbage once nothing reads them.
      for (const s of await this.ctx.store.listSeeds()) {
        if (s.value.base === base && s.value.version < version && s.value.node) {
          await this.collectGarbage(base, s.value.version);
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
      const codes = new Set(failures.map((f) => f.err.code));
      const code = codes.size === 1 ? failures[0]!.err.code : Code.ABORTED;
      throw new ProtoctlError(
        code,
        `push of ${ref} failed on ${failures.map((f) => `${f.node} (${f.err.message})`).join("; ")}`,
        { reason: failures[0]!.err.reason || "PUSH_FAILED", subject: `base/${ref}` },
      );
    }
  }

  /**
   * After a leader change: the attachment records a push left short of LOCAL
   * (its controller died) are carried to the end. A node that finished on
   * its own (the agent hydrates to the end without its caller) gets its
   * record set LOCAL; the others are pushed again, waiting for LOCAL, which
   * re-attaches from a live source where needed and hydrates; a failed
   * attempt (a node not Ready yet, a source gone) is retried for
   * `waitReadyMs` (default 60 s), then left to a later push.
   */
  async resume(opts: { waitReadyMs?: number } = {}): Promise<void> {
    const open = new Map<string, { base: string; version: number; atts: Attachment[] }>();
    for (const { value: a } of await this.ctx.store.listAttachments()) {
      if (!UNFINISHED.has(a.phase)) continue;
      const ref = `${a.base}@${a.version}`;
      const g = open.get(ref) ?? { base: a.base, version: a.version, atts: [] };
      g.atts.push(a);
      open.set(ref, g);
    }
    // A new leader sees nodes NotReady until their heartbeats find it, and they may flap while
    // they do: each version is retried until its nodes are done or the time is up.
    const deadline = Date.now() + (opts.waitReadyMs ?? 60_000);
    await Promise.all([...open].map(([ref, g]) => this.resumeOne(ref, g, deadline)));
  }

  private async resumeOne(
    ref: string,
    g: { base: string; version: number; atts: Attachment[] },
    deadline: number,
  ): Promise<void> {
    const log = this.ctx.log;
    let atts = g.atts;
    let lastErr = "nodes not Ready";
    while (atts.length > 0) {
      const holds = await this.inventory(g.base);
      const nodes: string[] = [];
      const left: Attachment[] = [];
      for (const a of atts) {
        const h = holds.get(a.node);
        const st = h?.versions.get(g.version);
        if (
          st === BaseVersionState.BASE_VERSION_STATE_HYDRATED ||
          st === BaseVersionState.BASE_VERSION_STATE_LOCAL
        ) {
          // The agent hydrated to the end without its caller: only the record is behind.
          await this.ctx.store.putAttachment({
            ...a,
            phase: AttachmentPhase.ATTACHMENT_PHASE_LOCAL,
            hydratedFraction: 1,
            uri: "",
            message: "",
          });
          continue;
        }
        left.push(a);
        if (h?.ready) nodes.push(a.node);
      }
      atts = left;
      if (nodes.length > 0) {
        log.info({ ref, nodes }, "resuming a push left unfinished");
        const err = await this.pushTo(g.base, g.version, nodes, true).then(
          () => undefined,
          (e: Error) => e,
        );
        if (!err) {
          log.info({ ref, nodes }, "resumed push done");
          atts = atts.filter((a) => !nodes.includes(a.node));
          continue;
        }
        lastErr = err.message;
      }
      if (Date.now() > deadline) {
        log.warn(
          { ref, nodes: atts.map((a) => a.node), err: lastErr },
          "unfinished push left to a later push",
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  /** A push of the controller's own (resume, the scheduler's hook, a delta's parent): defaults but these. */
  private pushTo(
    base: string,
    version: number,
    nodes: string[],
    waitLocal: boolean,
    sink: PushSink = () => undefined,
  ): Promise<void> {
    const req = { ref: { name: base, version }, nodes, all: false, selector: {}, fanout: 0, transport: "" };
    return this.push({ ...req, waitLocal }, sink);
  }

  /** Scheduler hook: makes base@N usable on `node` (attach now, hydrate in the background). */
  async ensureOn(node: string, base: string, version: number): Promise<void> {
    let failure: string | undefined;
    await this.pushTo(base, version, [node], false, (p) => {
      if (p.phase === AttachmentPhase.ATTACHMENT_PHASE_FAILED) failure = p.message;
    });
    if (failure) throw unavailable(`propagating ${base}@${version} to ${node} failed: ${failure}`);
  }

  /** The seal of base@N; FAILED_PRECONDITION when the controller never recorded one. */
  private async sealOf(base: string, version: number): Promise<BaseVersion> {
    const seal = (await this.ctx.store.getBaseVersion(base, version))?.value;
    if (!seal) {
      throw failedPrecondition(`${base}@${version} has no recorded seal: nodes' reports of it are foreign`, {
        reason: "NOT_SEALED",
        subject: `base/${base}@${version}`,
        hint: "see `protoctl base describe`; import, build or update the base through the controller",
      });
    }
    return seal;
  }

  /** Records `node` as a holder of base@N after a push the controller ran verified it there. */
  private async addHolder(base: string, version: number, node: string): Promise<void> {
    await this.ctx.store
      .updateSeal(base, version, (s) =>
        !s.origin || s.origin === node || s.holders.includes(node)
          ? undefined
          : { ...s, holders: [...s.holders, node] },
      )
      .then(() => reclassify(this.ctx, [node]))
      .catch((err) => this.ctx.log.warn({ err: (err as Error).message }, "holder record failed"));
  }

  private async latest(base: string): Promise<number> {
    const vs = await this.ctx.store.listBaseVersions(base);
    const v = vs.at(-1)?.value.version;
    if (!v) {
      throw failedPrecondition(`base ${base} has no version`, {
        reason: "BASE_NOT_FOUND",
        subject: `base/${base}`,
      });
    }
    return v;
  }

  private async inventory(base: string): Promise<Map<string, NodeHold>> {
    const [nodes, inv, atts] = await Promise.all([
      listNodes(this.ctx),
      this.ctx.store.inventory.list(),
      this.ctx.store.listAttachments(),
    ]);
    // Heartbeats lag a push by up to an interval: our own record of a finished hydration counts too.
    const localAtts = atts.filter(
      (a) => a.value.base === base && a.value.phase === AttachmentPhase.ATTACHMENT_PHASE_LOCAL,
    );
    const hydrated = new Set(localAtts.map((a) => `${a.value.node}/${a.value.version}`));
    const invBy = new Map(inv.items.map((i) => [i.value.node, i.value]));
    const out = new Map<string, NodeHold>();
    for (const n of nodes) {
      const versions = new Map<number, BaseVersionState>();
      for (const b of invBy.get(n.name)?.bases ?? []) {
        if (b.base === base) versions.set(b.version, b.state || BaseVersionState.BASE_VERSION_STATE_LOCAL);
      }
      for (const h of hydrated) {
        const [node, v] = h.split("/");
        const st = versions.get(Number(v));
        if (node === n.name && (st === undefined || st === BaseVersionState.BASE_VERSION_STATE_ATTACHED)) {
          versions.set(Number(v), BaseVersionState.BASE_VERSION_STATE_HYDRATED);
        }
      }
      const imageSum = new Map<number, string>();
      for (const a of localAtts) if (a.value.node === n.name) imageSum.set(a.value.version, a.value.checksum);
      out.set(n.name, {
        imageSum,
        state: BaseVersionState.BASE_VERSION_STATE_UNSPECIFIED,
        ready: n.state === NodeState.NODE_STATE_READY,
        labels: n.labels,
        versions,
      });
    }
    return out;
  }

  private async pushOne(r: PushRun, target: string, markUsable: () => void): Promise<void> {
    const tv = r.holds.get(target)?.versions;
    const ov = r.holds.get(r.origin)?.versions;
    const parentIs = (v: Map<number, BaseVersionState> | undefined, ...states: BaseVersionState[]) =>
      states.includes(v?.get(r.version - 1) ?? BaseVersionState.BASE_VERSION_STATE_UNSPECIFIED);
    const {
      BASE_VERSION_STATE_LOCAL: LOCAL,
      BASE_VERSION_STATE_HYDRATED: HYDRATED,
      BASE_VERSION_STATE_ATTACHED: ATTACHED,
    } = BaseVersionState;
    // An asked-for delta onto a parent the target holds only attached (read over NBD): the delta
    // needs the whole parent on the node, so the parent's hydration comes first (this joins the
    // push still hydrating it, or starts one).
    let parentHydrated = false;
    const parent = r.version - 1;
    if (
      r.transport === "delta" &&
      parentIs(ov, LOCAL) &&
      !parentIs(tv, LOCAL, HYDRATED) &&
      (parentIs(tv, ATTACHED) || (await this.attachedNotLocal(r.base, parent, target)))
    ) {
      r.send(
        progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHING, {
          message: `waiting for @${parent} to hydrate (the delta's parent)`,
        }),
      );
      try {
        await this.pushTo(r.base, parent, [target], true);
      } catch (err) {
        const pe = ProtoctlError.from(err);
        r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: pe.message }));
        throw pe;
      }
      parentHydrated = true;
    }
    // The origin sends from its pool. A target holding @N-1 as a hydrated seed takes the delta
    // after a local copy of @N-1 into its pool (agent PropagationService.receive): asked for
    // explicitly, not chosen, as that copy delays time-to-usable by a whole local copy.
    const withParent = parentIs(ov, LOCAL) && (parentHydrated || parentIs(tv, LOCAL, HYDRATED));
    const wantDelta =
      r.transport === "delta" || (r.transport === "" && parentIs(tv, LOCAL) && parentIs(ov, LOCAL));
    if (wantDelta) {
      try {
        await this.delta(r, target, withParent ? r.version - 1 : 0);
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
    await this.seedPush(r, target, markUsable);
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
    const src = await agentFor(this.ctx, r.origin);
    const dst = await agentFor(this.ctx, target);
    r.send(
      progress(target, AttachmentPhase.ATTACHMENT_PHASE_HYDRATING, {
        sourceNode: r.origin,
        message: parentVersion ? `btrfs send -p @${parentVersion}` : "btrfs send (full)",
      }),
    );
    const up = src.sendDelta({ ref: { name: r.base, version: r.version }, parentVersion });
    const result = new Promise<BaseVersion>((resolve, reject) => {
      const down = dst.receiveDelta((err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
      up.on("data", (c: DeltaChunk) => {
        if (!down.write(c)) {
          up.pause();
          down.once("drain", () => up.resume());
        }
      });
      up.on("end", () => down.end());
      up.on("error", (e) => {
        down.cancel();
        reject(fromServiceError(e));
      });
    });
    await result;
    // The delta came from the origin's pool through this controller: the target holds the sealed version.
    await this.addHolder(r.base, r.version, target);
    r.send(
      progress(target, AttachmentPhase.ATTACHMENT_PHASE_LOCAL, {
        fraction: 1,
        sourceNode: r.origin,
        message: "delta",
      }),
    );
  }

  /**
   * The seed of base@N: the recorded one (its image may since have been
   * collected on the origin: then hydrated nodes serve it), or with
   * `republish` a fresh image from `origin`.
   */
  private seed(base: string, version: number, origin: string, republish: boolean): Promise<SeedImage> {
    const ref = `${base}@${version}`;
    let p = this.seeds.get(ref);
    if (!p) {
      p = (async () => {
        const seal = await this.sealOf(base, version);
        const have = (await this.ctx.store.listSeeds()).find(
          (s) => s.value.base === base && s.value.version === version,
        );
        // Targets verify what they copy against the seal's checksum, never a source's claim.
        if (have && !republish && (!seal.checksum || have.value.checksum === seal.checksum)) {
          return { ...have.value, checksum: seal.checksum || have.value.checksum };
        }
        if (seal.origin && origin !== seal.origin) {
          throw failedPrecondition(`${ref} can only be published by its origin ${seal.origin}`, {
            reason: "NO_ORIGIN",
            subject: `base/${ref}`,
            hint: `push again once node ${seal.origin} is Ready`,
          });
        }
        const c = await agentFor(this.ctx, origin);
        let seed: SeedImage | undefined;
        await collect(c.publishSeed({ ref: { name: base, version } }), (ev: OperationEvent) => {
          if (ev.event?.$case === "result" && ev.event.result.result?.$case === "seed") {
            seed = ev.event.result.result.seed;
          }
        });
        if (!seed) throw new ProtoctlError(Code.INTERNAL, `PublishSeed of ${ref} returned no seed`);
        const published = seed;
        // The origin's image of the version it made binds the seal's checksum (first publish,
        // or a republish after its image was collected: only the origin can do either).
        if (seal.origin && published.checksum !== seal.checksum) {
          await this.ctx.store.updateSeal(base, version, (s) => ({ ...s, checksum: published.checksum }));
          await this.ctx.store.events.emit({
            kind: seal.checksum ? "base.resealed" : "base.sealed",
            subject: `base/${ref}`,
            message: `seed image ${published.checksum} from ${origin}`,
            node: origin,
          });
          await reclassify(this.ctx);
        }
        await this.ctx.store.putSeed(published);
        return published;
      })();
      this.seeds.set(ref, p);
      p.catch(() => undefined).finally(() => this.seeds.delete(ref));
    }
    return p;
  }

  private async exportOn(r: PushRun, node: string): Promise<string> {
    let p = r.exports.get(node);
    if (!p) {
      p = (async () => {
        const c = await agentFor(this.ctx, node);
        const exp = await new Promise<import("../../proto/gen/protoctl/v1/types.js").Export>(
          (resolve, reject) =>
            c.serveExport(
              {
                ref: { name: r.base, version: r.version },
                bindAddress: "",
                port: 0,
                maxClients: r.maxClients,
                allow: [],
              },
              (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)),
            ),
        );
        await this.ctx.store.putExport(exp);
        return exp.uri;
      })();
      r.exports.set(node, p);
      p.catch(() => r.exports.delete(node));
    }
    return p;
  }

  /**
   * Seed transport for one target, in two steps: attach lazily (a lazy slot
   * on any source: usable at once), then hydrate (a copy slot on a holder,
   * at most k per holder; the agent switches its seed to that holder if it
   * is another node). A lost source is replaced in either step.
   */
  private async seedPush(r: PushRun, target: string, markUsable: () => void): Promise<void> {
    const seed = r.seed;
    if (!seed) throw new ProtoctlError(Code.INTERNAL, `no seed of ${r.ref} for ${target}`);
    const c = await agentFor(this.ctx, target);
    const ref = { name: r.base, version: r.version };
    let lazySrc: string | undefined;
    let recorded: Promise<void> = Promise.resolve();
    try {
      lazySrc = await this.withSource(r, target, "lazy", async (src, uri) => {
        await collect(c.attach({ ref, uri, seed, hydrate: false, sourceNode: src }), () => undefined);
        r.picker.addAttached(target, src);
        r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHED, { sourceNode: src }));
        recorded = this.record(r, target, src, uri, AttachmentPhase.ATTACHMENT_PHASE_ATTACHED, 0);
        markUsable();
      });
      // Copies wait until every target of the push is attached: an attach is a few small reads and
      // what "usable" waits for; a copy is the whole image and would slow the attaches still going
      // (CPU, the sources' bandwidth), so usable-everywhere comes first, then local-everywhere.
      await r.allAttached;
      // On record before the copy: a leader that takes over mid-copy finds this push unfinished.
      await recorded;
      const src = await this.withSource(r, target, "hydrate", async (src, uri) => {
        let lastPct = -10;
        await collect(c.attach({ ref, uri, seed, hydrate: true, sourceNode: src }), (ev: OperationEvent) => {
          if (ev.event?.$case !== "progress") return;
          const p = ev.event.progress;
          if (p.step === "hydrating" && p.fraction - lastPct / 100 >= 0.1) {
            lastPct = Math.floor(p.fraction * 10) * 10;
            r.send(
              progress(target, AttachmentPhase.ATTACHMENT_PHASE_HYDRATING, {
                fraction: p.fraction,
                sourceNode: src,
              }),
            );
          }
        });
      });
      r.picker.addHolder(target);
      r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_LOCAL, { fraction: 1, sourceNode: src }));
      await this.record(r, target, src, "", AttachmentPhase.ATTACHMENT_PHASE_LOCAL, 1);
      // hydrated: the agent verified the copy against the checksum this push passed (the seal's)
      await this.addHolder(r.base, r.version, target);
    } finally {
      if (lazySrc) r.picker.release(lazySrc, "lazy");
    }
  }

  /**
   * Runs `step` with a source for `use` (waiting for a free slot), retrying
   * with another source while the failure is the source's; resolves with the
   * source that worked. The lazy slot stays taken on success (the target
   * reads through it until it is local); the copy slot is given back.
   */
  private async withSource(
    r: PushRun,
    target: string,
    use: SourceUse,
    step: (src: string, uri: string) => Promise<void>,
  ): Promise<string> {
    let lastErr: ProtoctlError | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let src = r.picker.acquire(target, use);
      while (!src) {
        if (!r.picker.anyUsable(target, use)) {
          const pe = unavailable(
            `no source of ${r.ref} is left for ${target}${lastErr ? ` (last error: ${lastErr.message})` : ""}`,
            {
              reason: "NO_SOURCE",
              subject: `base/${r.ref}`,
              hint: "push again once a node holding it is Ready",
            },
          );
          r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: pe.message }));
          throw pe;
        }
        await r.picker.changed();
        src = r.picker.acquire(target, use);
      }
      try {
        const uri = await this.exportOn(r, src).catch((err) => {
          throw Object.assign(ProtoctlError.from(err), { sourceFailed: true });
        });
        await step(src, uri);
        if (use === "hydrate") r.picker.release(src, use);
        return src;
      } catch (err) {
        r.picker.release(src, use);
        const pe = ProtoctlError.from(err);
        lastErr = pe;
        this.ctx.log.warn(
          { ref: r.ref, target, source: src, use, code: Code[pe.code], err: pe.message },
          "push step failed",
        );
        const sourceLost =
          pe.code === Code.UNAVAILABLE ||
          (pe as ProtoctlError & { sourceFailed?: boolean }).sourceFailed === true;
        if (pe.code === Code.UNAVAILABLE && !(await this.alive(target))) {
          // The target went away (an agent restart): its attachment survives it (the agent adopts
          // it), so wait for the agent and go on with the same step, not another source.
          r.send(
            progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHING, {
              sourceNode: src,
              message: `${target} does not answer: waiting for it`,
            }),
          );
          if (await this.waitAlive(target, TARGET_RETURN_MS)) {
            attempt--;
            continue;
          }
          const lost = unavailable(`${target} did not come back within ${TARGET_RETURN_MS / 1000} s`, {
            reason: "TARGET_UNAVAILABLE",
            subject: `node/${target}`,
            hint: "push again once the node is Ready",
          });
          r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: lost.message }));
          throw lost;
        }
        if (!sourceLost) {
          r.send(
            progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, {
              message: pe.message,
              sourceNode: src,
            }),
          );
          await this.record(r, target, src, "", AttachmentPhase.ATTACHMENT_PHASE_FAILED, 0, pe.message);
          throw pe;
        }
        // The source (or the chain behind it) is gone: attach or switch to another one.
        if (!(await this.alive(src))) r.picker.markDead(src);
        r.send(
          progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHING, {
            sourceNode: src,
            message: `source ${src} lost (${pe.message}): re-attaching`,
          }),
        );
        await r.picker.changed(200);
      }
    }
    const pe = unavailable(`giving up on ${target} after ${MAX_ATTEMPTS} sources: ${lastErr?.message}`, {
      reason: "NO_SOURCE",
    });
    r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: pe.message }));
    throw pe;
  }

  /** Polls until the node's agent answers; false after `ms`. */
  private async waitAlive(node: string, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await this.alive(node)) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  }

  /** True when the node's agent answers (a failed attach may be the target's fault, not the source's). */
  private async alive(node: string): Promise<boolean> {
    try {
      const c = await agentFor(this.ctx, node);
      await new Promise<void>((resolve, reject) =>
        c.getInfo({}, new Metadata(), { deadline: new Date(Date.now() + 1500) }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      return true;
    } catch {
      return false;
    }
  }

  private async record(
    r: PushRun,
    node: string,
    source: string,
    uri: string,
    phase: AttachmentPhase,
    fraction: number,
    message = "",
  ): Promise<void> {
    await this.ctx.store
      .putAttachment({
        base: r.base,
        version: r.version,
        node,
        sourceNode: source,
        uri,
        phase,
        hydratedFraction: fraction,
        message,
        transport: "seed",
        checksum: r.seed?.checksum ?? "",
      })
      .catch((err) => this.ctx.log.warn({ err: (err as Error).message }, "attachment record failed"));
  }

  /**
   * Seeds no node needs any more: when every ready node holding base@N holds
   * it locally or hydrated (none still reads over NBD), the exports stop and
   * the origin deletes the image. A later push publishes again.
   */
  async collectGarbage(base: string, version: number, force = false): Promise<boolean> {
    const ref = `${base}@${version}`;
    // A push being set up may have read the seed record already: keep the seed.
    if (!force && (this.starting.get(ref) ?? 0) > 0) return false;
    const p = this.collectOnce(base, version, force);
    this.collecting.set(ref, p);
    try {
      return await p;
    } finally {
      if (this.collecting.get(ref) === p) this.collecting.delete(ref);
    }
  }

  private async collectOnce(base: string, version: number, force: boolean): Promise<boolean> {
    const holds = await this.inventory(base);
    const reading = [...holds.values()].some(
      (h) => h.ready && h.versions.get(version) === BaseVersionState.BASE_VERSION_STATE_ATTACHED,
    );
    const running = [...this.inflight.keys()].some((k) =>
      k.startsWith(inflightKey(`${base}@${version}`, "")),
    );
    if (!force && (reading || running)) return false;
    const exports = (await this.ctx.store.listExports()).filter(
      (e) => e.value.base === base && e.value.version === version,
    );
    for (const e of exports) {
      await this.call(e.value.node, (c, cb) => c.stopExport({ ref: { name: base, version } }, cb));
    }
    for (const e of exports) await this.ctx.store.deleteExport(base, version, e.value.node);
    // The image itself goes once no node can need it: every ready node holds the version, or a
    // newer version exists (or the version is deleted: force).
    const latest = (await this.ctx.store.listBaseVersions(base)).at(-1)?.value.version ?? 0;
    const everywhere = [...holds.values()].every(
      (h) =>
        !h.ready ||
        (h.versions.has(version) && h.versions.get(version) !== BaseVersionState.BASE_VERSION_STATE_ATTACHED),
    );
    if (!force && !everywhere && version >= latest) return true;
    const seeds = (await this.ctx.store.listSeeds()).filter(
      (s) => s.value.base === base && s.value.version === version,
    );
    for (const s of seeds) {
      if (s.value.node)
        await this.call(s.value.node, (c, cb) => c.deleteSeed({ ref: { name: base, version } }, cb));
    }
    await this.ctx.store.deleteSeed(base, version, force);
    // Unless the version is gone, keep the record without its image (node ""): its checksum names
    // what hydrated nodes hold, so they can serve a later push without a new image.
    if (!force) for (const s of seeds) await this.ctx.store.putSeed({ ...s.value, node: "" });
    return true;
  }

  private async call(
    node: string,
    fn: (c: AgentServiceClient, cb: (err: unknown) => void) => void,
  ): Promise<void> {
    try {
      const c = await agentFor(this.ctx, node);
      await new Promise<void>((resolve, reject) => fn(c, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      this.ctx.log.debug({ node, err: (err as Error).message }, "propagation cleanup call failed");
    }
  }
}

interface PushRun {
  base: string;
  version: number;
  ref: string;
  origin: string;
  picker: SourcePicker;
  holds: Map<string, NodeHold>;
  send: PushSink;
  maxClients: number;
  exports: Map<string, Promise<string>>;
  transport: string;
  seed: SeedImage | undefined;
  /** Every target of this push is usable (or failed): copies start then, see seedPush. */
  allAttached: Promise<void>;
}

const propagators = new WeakMap<ControllerContext, Propagator>();

/** The replica's one Propagator (pushes through the API and the scheduler hook share it). */
export function propagatorFor(ctx: ControllerContext): Propagator {
  let p = propagators.get(ctx);
  if (!p) {
    p = new Propagator(ctx);
    propagators.set(ctx, p);
  }
  return p;
}
