/**
 * The env loop. Desired state is the spec (`start` = should run; a deleted
 * spec = should go), actual state comes from the env's agent, the status
 * records where it is and what was last seen:
 *
 *   Pending --place--> Scheduled --CreateEnv(+Start)--> Running <-> Stopped
 *      ^                   |                              |
 *      |  node NotReady past grace: Lost, or back to Pending when restart=ALWAYS
 *   spec deleted: DeleteEnv on the agent, then the status key goes too.
 *
 * The placement (node + generation) is written before the agent is called,
 * so a leader that dies mid-way leaves a placement its successor completes
 * with the same idempotent CreateEnv (same generation) instead of placing the
 * env twice. Every status write is conditioned on the status revision read
 * and on the leader's election key (fencing a deposed leader).
 */

import { formatBaseRef } from "../../common/base-ref.js";
import { Code, ProtoctlError } from "../../common/errors.js";
import type { UnaryDefinition } from "../../common/h2-unary.js";
import { AgentServiceService } from "../../proto/gen/protoctl/v1/agent.js";
import {
  type Env,
  EnvPhase,
  type EnvSpec,
  type EnvStatus,
  RestartPolicy,
} from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { placementTimer } from "../metrics/instrument.js";
import { requestMove } from "../operations/env-move-pass.js";
import { schedule } from "../scheduler/schedule.js";
import type { Strategy } from "../scheduler/view.js";
import type { EventInput } from "../store/events.js";
import type { Condition, Versioned, Write } from "../store/kv.js";
import { codecs } from "../store/store.js";
import type { ClusterCache } from "./cluster-cache.js";
import { failureMessage } from "./failure-output.js";
import type { ReconcileResult, WorkQueue } from "./queue.js";

/**
 * Called when a placement needs the base version propagated first
 * (scheduler.propagation): resolves once the version is usable on the node.
 */
export type PropagationHook = (node: string, base: string, version: number) => Promise<void>;

/**
 * After pushing base@N to a node failed, placements of envs on base@N avoid
 * that node for this long (the failure is their reason there), then it may be
 * tried again.
 */
export const PROPAGATION_AVOID_MS = 30_000;

/**
 * Called before CreateEnv on the env's node: hand it what the env needs and
 * the agent cannot fetch itself (layer recipes, lab networks). Errors with a
 * terminal code fail the env; others are retried with the env's backoff.
 */
export type PrepareHook = (node: string, spec: EnvSpec, baseVersion: number) => Promise<void>;

export class EnvReconciler {
  /** Envs whose actual state should be re-read from the agent on the next pass. */
  readonly verify = new Set<string>();
  private readonly statusMissingSince = new Map<string, number>();
  /** Envs waiting for a placement (re-tried when nodes change). */
  readonly pending = new Set<string>();
  propagate: PropagationHook | undefined;
  /** base@N → node → why pushing it there failed, and until when placements avoid the node. */
  private readonly propagationFailed = new Map<string, Map<string, { reason: string; until: number }>>();
  readonly prepare: PrepareHook[] = [];
  /** Time spent waiting, by kind (ms), and counts: for the bench and debugging. */
  readonly timing = { writes: 0, writeMs: 0, agentCalls: 0, agentMs: 0, passes: 0 };

  constructor(
    private readonly ctx: ControllerContext,
    private readonly cache: ClusterCache,
    private readonly queue: WorkQueue,
    private readonly fence: () => Condition[],
  ) {}

  async reconcile(name: string): Promise<ReconcileResult> {
    this.timing.passes++;
    const specV = this.cache.specs.get(name);
    const stV = this.cache.status.get(name);
    if (!specV) {
      this.pending.delete(name);
      return stV ? this.finalizeDelete(name, stV) : undefined;
    }
    const spec = specV.value;
    if (!stV) {
      // The API writes spec and status together, but they reach us on two
      // watch streams: give the status a moment before supplying a missing one.
      const since = this.statusMissingSince.get(name) ?? Date.now();
      this.statusMissingSince.set(name, since);
      if (Date.now() - since < 2000) return { requeueAfterMs: 1000 };
      this.statusMissingSince.delete(name);
      await this.writeStatus(name, undefined, newStatus());
      return;
    }
    this.statusMissingSince.delete(name);
    const st = stV.value;
    switch (st.phase) {
      case EnvPhase.ENV_PHASE_UNSPECIFIED:
      case EnvPhase.ENV_PHASE_PENDING:
        return this.place(name, spec, stV);
      case EnvPhase.ENV_PHASE_FAILED:
      case EnvPhase.ENV_PHASE_LOST:
      case EnvPhase.ENV_PHASE_MOVING: // an env-move operation owns it (operations/env-move-pass.ts)
        this.pending.delete(name);
        return;
      default:
        this.pending.delete(name);
        return this.converge(name, spec, stV);
    }
  }

  private async place(name: string, spec: EnvSpec, stV: Versioned<EnvStatus>): Promise<ReconcileResult> {
    const st = stV.value;
    const base = spec.base?.name ?? "";
    const version = spec.base?.version || st.baseVersion || this.cache.latestVersion(base);
    this.pending.add(name);
    if (!version) {
      const reasons = [{ node: "*", reason: `no node holds any version of base ${base}` }];
      await this.writePending(name, stV, reasons, `base ${base} is unknown`);
      return { requeueAfterMs: 10_000 };
    }
    const placed = placementTimer();
    const plan = schedule(this.cache.view(), {
      env: name,
      base,
      version,
      memoryBytes: spec.resources?.memoryBytes ?? 0,
      diskBytes: spec.resources?.diskBytes ?? 0,
      nodeSelector: spec.nodeSelector,
      node: spec.node || undefined,
      group: spec.group || undefined,
      strategy: this.ctx.config.scheduler.strategy as Strategy,
      avoid: this.avoidFor(formatBaseRef(base, version)),
    });
    placed(plan.node);
    if (!plan.node) {
      const reasons = plan.rejections.map((r) => ({ node: r.node, reason: r.reason }));
      if (reasons.length === 0) reasons.push({ node: "*", reason: "no nodes have joined the cluster" });
      await this.writePending(name, stV, reasons, `no node can take env ${name}`);
      return { requeueAfterMs: 15_000 };
    }
    this.pending.delete(name);
    this.cache.assume(name, plan.node, spec);
    if (plan.needsPropagation && this.propagate) {
      try {
        await this.propagate(plan.node, base, version);
      } catch (err) {
        // Not this node for a while: the next pass places the env elsewhere if it can, or shows
        // this failure among the reasons it stays Pending.
        this.cache.unassume(name);
        this.pending.add(name);
        const e = ProtoctlError.from(err);
        const ref = formatBaseRef(base, version);
        const reason = `base ${ref} is not on this node and pushing it here failed: ${e.message}`;
        const byNode = this.propagationFailed.get(ref) ?? new Map();
        byNode.set(plan.node, { reason, until: Date.now() + PROPAGATION_AVOID_MS });
        this.propagationFailed.set(ref, byNode);
        this.ctx.log.warn(
          { env: name, node: plan.node, err: e.message },
          "propagation for a placement failed",
        );
        return { requeueAfterMs: 0 };
      }
    }
    const next: EnvStatus = {
      ...st,
      phase: EnvPhase.ENV_PHASE_SCHEDULED,
      node: plan.node,
      baseVersion: version,
      generation: st.generation + 1,
      reasons: [],
      message: "",
    };
    const ok = await this.writeStatus(name, stV, next, [
      { kind: "env.scheduled", subject: `env/${name}`, message: `placed on ${plan.node}`, node: plan.node },
    ]);
    if (!ok) {
      this.cache.unassume(name);
      return { requeueAfterMs: 1000 };
    }
    return this.converge(name, spec, this.cache.status.get(name)!);
  }

  private async converge(name: string, spec: EnvSpec, stV: Versioned<EnvStatus>): Promise<ReconcileResult> {
    const st = stV.value;
    const node = st.node;
    if (!this.cache.isReady(node)) {
      const grace = this.ctx.config.reconcile.lostGraceSeconds * 1000;
      const down = this.cache.notReadyForMs(node);
      if (down < grace) return { requeueAfterMs: grace - down + 50 };
      return this.lose(name, spec, stV, `node ${node} NotReady for ${Math.round(down / 1000)}s`);
    }
    const nodeRec = this.cache.nodes.get(node)?.value;
    if (nodeRec?.draining && spec.restart === RestartPolicy.RESTART_POLICY_ALWAYS) {
      // its filesystem goes along (env move) when another node can take it; else recreated empty
      if (await this.moveAway(name, spec, st)) return;
      await this.agentCall(node, AgentServiceService.deleteEnv, { name }).catch(ignoreNotFound);
      return this.lose(name, spec, stV, `node ${node} is draining`);
    }
    const wantVersion = spec.base?.version ?? 0;
    if (wantVersion && st.baseVersion && wantVersion !== st.baseVersion) {
      // roll: envs are never upgraded in place; recreate on the new version (possibly elsewhere)
      await this.agentCall(node, AgentServiceService.deleteEnv, { name }).catch(ignoreNotFound);
      const why = `rolling from ${spec.base?.name}@${st.baseVersion} to @${wantVersion}`;
      const ok = await this.writeStatus(
        name,
        stV,
        {
          ...st,
          phase: EnvPhase.ENV_PHASE_PENDING,
          node: "",
          baseVersion: wantVersion,
          startedMs: 0,
          message: why,
        },
        [{ kind: "env.rolled", subject: `env/${name}`, message: why, node }],
      );
      return ok ? { requeueAfterMs: 0 } : undefined;
    }
    const wantRunning = spec.start;
    let actual: Env | undefined;
    try {
      if (st.phase === EnvPhase.ENV_PHASE_SCHEDULED || this.verify.delete(name)) {
        for (const hook of this.prepare) await hook(node, spec, st.baseVersion);
        const agentSpec: EnvSpec = {
          ...spec,
          base: { name: spec.base?.name ?? "", version: st.baseVersion },
        };
        actual = await this.agentCall(node, AgentServiceService.createEnv, {
          spec: agentSpec,
          generation: st.generation,
        });
      }
      const phase = actual?.status?.phase ?? st.phase;
      if (wantRunning && phase !== EnvPhase.ENV_PHASE_RUNNING) {
        actual = await this.agentCall(node, AgentServiceService.startEnv, { name });
      } else if (!wantRunning && phase === EnvPhase.ENV_PHASE_RUNNING) {
        actual = await this.agentCall(node, AgentServiceService.stopEnv, {
          name,
          timeoutMs: 10_000,
          force: false,
        });
      }
    } catch (err) {
      const pe = ProtoctlError.from(err);
      if (pe.code === Code.NOT_FOUND && st.phase !== EnvPhase.ENV_PHASE_SCHEDULED) {
        // the agent lost it (restart with a volatile pool): create it again
        this.verify.add(name);
        throw pe;
      }
      if (pe.retryable) throw pe;
      const message = failureMessage(pe);
      await this.writeStatus(name, stV, { ...st, phase: EnvPhase.ENV_PHASE_FAILED, message }, [
        {
          kind: "env.failed",
          subject: `env/${name}`,
          message: pe.message,
          node,
          attributes: { reason: pe.reason },
        },
      ]);
      return;
    }
    if (!actual?.status) return;
    const a = actual.status;
    const next: EnvStatus = {
      ...st,
      phase: a.phase,
      startedMs: a.startedMs || st.startedMs,
      createdMs: st.createdMs || a.createdMs,
      leaderPid: a.leaderPid,
      addresses: a.addresses,
      message: a.message,
    };
    if (sameStatus(st, next)) return;
    const events: EventInput[] = [];
    if (next.phase !== st.phase) {
      const kind =
        next.phase === EnvPhase.ENV_PHASE_RUNNING
          ? "env.started"
          : next.phase === EnvPhase.ENV_PHASE_STOPPED
            ? "env.stopped"
            : next.phase === EnvPhase.ENV_PHASE_CREATED
              ? "env.created"
              : "env.changed";
      events.push({ kind, subject: `env/${name}`, message: `${EnvPhase[next.phase]} on ${node}`, node });
    }
    await this.writeStatus(name, stV, next, events);
  }

  /** Asks for an env move off a draining node to where the scheduler would place the env; false: nowhere. */
  private async moveAway(name: string, spec: EnvSpec, st: EnvStatus): Promise<boolean> {
    const base = spec.base?.name ?? "";
    const plan = schedule(this.cache.view(), {
      env: name,
      base,
      version: st.baseVersion,
      memoryBytes: spec.resources?.memoryBytes ?? 0,
      diskBytes: spec.resources?.diskBytes ?? 0,
      nodeSelector: spec.nodeSelector,
      group: spec.group || undefined,
      strategy: this.ctx.config.scheduler.strategy as Strategy,
      avoid: { [st.node]: "node is draining" },
    });
    if (!plan.node || plan.node === st.node) return false;
    if (!(await requestMove(this.ctx.store, name, st.node, plan.node, true))) return false;
    this.ctx.log.info({ env: name, from: st.node, to: plan.node }, "draining: env moves with its filesystem");
    return true;
  }

  /** The env's node is gone: Lost, or back to Pending for a new placement when restart=ALWAYS. */
  private async lose(
    name: string,
    spec: EnvSpec,
    stV: Versioned<EnvStatus>,
    why: string,
  ): Promise<ReconcileResult> {
    const st = stV.value;
    const again = spec.restart === RestartPolicy.RESTART_POLICY_ALWAYS;
    const next: EnvStatus = again
      ? {
          ...st,
          phase: EnvPhase.ENV_PHASE_PENDING,
          node: "",
          message: `${why}: recreating elsewhere`,
          reasons: [],
          startedMs: 0,
        }
      : { ...st, phase: EnvPhase.ENV_PHASE_LOST, message: why };
    const ok = await this.writeStatus(name, stV, next, [
      { kind: again ? "env.rescheduled" : "env.lost", subject: `env/${name}`, message: why, node: st.node },
    ]);
    if (ok && again) return { requeueAfterMs: 0 };
    return;
  }

  private async finalizeDelete(name: string, stV: Versioned<EnvStatus>): Promise<ReconcileResult> {
    const st = stV.value;
    if (st.phase === EnvPhase.ENV_PHASE_PENDING && st.generation === 0 && Date.now() - st.createdMs < 5000) {
      // most likely a brand-new env whose spec event is still on its way
      return { requeueAfterMs: 250 };
    }
    if (st.node && st.phase === EnvPhase.ENV_PHASE_LOST && this.cache.isReady(st.node)) {
      // its node came back: a copy it may still hold goes with the record
      await this.agentCall(st.node, AgentServiceService.deleteEnv, { name }).catch(ignoreNotFound);
    } else if (st.node && st.phase !== EnvPhase.ENV_PHASE_PENDING && st.phase !== EnvPhase.ENV_PHASE_LOST) {
      if (this.cache.isReady(st.node)) {
        await this.agentCall(st.node, AgentServiceService.deleteEnv, { name }).catch(ignoreNotFound);
      } else {
        const grace = this.ctx.config.reconcile.lostGraceSeconds * 1000;
        const down = this.cache.notReadyForMs(st.node);
        // the node's orphan sweep deletes it there when the node comes back
        if (down < grace) return { requeueAfterMs: grace - down + 50 };
      }
    }
    const key = this.ctx.store.keys.envStatus(name);
    const writes: Write[] = [
      { op: "delete", key },
      await this.ctx.store.events.write({
        kind: "env.deleted",
        subject: `env/${name}`,
        message: "deleted",
        node: st.node,
      }),
    ];
    // the spec must really be gone: the spec and status watches are separate
    // streams, so a new env's status can reach us before its spec does
    const specGone = { key: this.ctx.store.keys.envSpec(name), modRevision: 0 };
    const r = await this.ctx.store.batcher.commit({
      conditions: [{ key, modRevision: stV.modRevision }, specGone, ...this.fence()],
      writes,
    });
    if (r.succeeded) this.cache.status.applyLocal(name, undefined, r.revision);
    else return { requeueAfterMs: 200 };
    return;
  }

  /**
   * Nodes that base@N could not be pushed to lately, with the reason (expired
   * ones dropped); undefined when there are none (most placements), so the
   * scheduler skips the lookup.
   */
  private avoidFor(ref: string): Record<string, string> | undefined {
    if (this.propagationFailed.size === 0) return undefined;
    const now = Date.now();
    for (const [r, byNode] of this.propagationFailed) {
      for (const [node, f] of byNode) if (f.until <= now) byNode.delete(node);
      if (byNode.size === 0) this.propagationFailed.delete(r);
    }
    const byNode = this.propagationFailed.get(ref);
    if (!byNode) return undefined;
    const out: Record<string, string> = {};
    for (const [node, f] of byNode) out[node] = f.reason;
    return out;
  }

  private async writePending(
    name: string,
    stV: Versioned<EnvStatus>,
    reasons: EnvStatus["reasons"],
    message: string,
  ): Promise<void> {
    const st = stV.value;
    if (
      st.phase === EnvPhase.ENV_PHASE_PENDING &&
      st.message === message &&
      JSON.stringify(st.reasons) === JSON.stringify(reasons)
    ) {
      return;
    }
    const first = st.reasons.length === 0;
    await this.writeStatus(
      name,
      stV,
      { ...st, phase: EnvPhase.ENV_PHASE_PENDING, node: "", reasons, message },
      first ? [{ kind: "env.unschedulable", subject: `env/${name}`, message }] : [],
    );
  }

  private async writeStatus(
    name: string,
    prev: Versioned<EnvStatus> | undefined,
    next: EnvStatus,
    events: EventInput[] = [],
  ): Promise<boolean> {
    const store = this.ctx.store;
    const key = store.keys.envStatus(name);
    const writes: Write[] = [{ op: "put", key, value: codecs.envStatus.encode(next) }];
    const t0 = performance.now();
    for (const e of events) writes.push(await store.events.write(e));
    const r = await store.batcher.commit({
      conditions: [{ key, modRevision: prev?.modRevision ?? 0 }, ...this.fence()],
      writes,
    });
    this.timing.writes++;
    this.timing.writeMs += performance.now() - t0;
    if (r.succeeded) this.cache.status.applyLocal(name, next, r.revision);
    else this.queue.addAfter(name, 200);
    return r.succeeded;
  }

  /** A unary AgentService call on the env's node, with the configured deadline. */
  private agentCall<Req, Res>(node: string, def: UnaryDefinition<Req, Res>, req: Req): Promise<Res> {
    const address = this.cache.nodeAddress(node);
    if (!address) return Promise.reject(new ProtoctlError(Code.UNAVAILABLE, `node ${node} has no address`));
    const t0 = performance.now();
    this.timing.agentCalls++;
    return this.ctx.agents
      .unary(node, address, def, req, { deadlineMs: this.ctx.config.reconcile.agentTimeoutMs })
      .finally(() => {
        this.timing.agentMs += performance.now() - t0;
      });
  }
}

export function newStatus(): EnvStatus {
  return {
    phase: EnvPhase.ENV_PHASE_PENDING,
    node: "",
    message: "",
    reasons: [],
    createdMs: Date.now(),
    startedMs: 0,
    baseVersion: 0,
    leaderPid: 0,
    addresses: [],
    generation: 0,
  };
}

function sameStatus(a: EnvStatus, b: EnvStatus): boolean {
  return (
    a.phase === b.phase &&
    a.message === b.message &&
    a.leaderPid === b.leaderPid &&
    a.startedMs === b.startedMs &&
    a.addresses.join() === b.addresses.join()
  );
}

function ignoreNotFound(err: unknown): void {
  const pe = ProtoctlError.from(err);
  if (pe.code !== Code.NOT_FOUND) throw pe;
}
