/**
 * The leader's lab loop: lab networks on nodes. Desired state = the stored
 * lab (`lab-state/<lab>`: networks with VNI and bridge name) and where its
 * machines are placed (env statuses); actual state = what this leader has
 * applied on each agent (EnsureNetwork is idempotent, so a new leader simply
 * applies again).
 *
 * For each lab network, every node holding one of its machines gets the
 * bridge and a VXLAN device with the network's VNI, its own underlay address
 * as local end and every other such node as a flood peer. The env loop calls
 * `prepare(node, spec)` between placement and CreateEnv, so the bridge exists
 * before nspawn plugs the machine's veth into it, and peers learn of a new
 * node at the same moment. `reconcile(lab)` runs on lab and placement
 * changes: a node left by its last machine of a network loses the bridge and
 * the others drop it from their peers; a lab being deleted loses its
 * networks everywhere once its machines are gone, then its record.
 *
 * All work on one network is serialized (one lock per bridge name), and an
 * agent is called only when its peer list changes.
 *
 * Failures. Every failed EnsureNetwork is recorded as a `lab.network_failed`
 * event (once per node, network and message, not on every retry). In
 * `prepare`, an error the agent gives on the env's own node with a terminal
 * code (INVALID_ARGUMENT, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, …) fails
 * the env at once with the agent's message and reason; other errors (on its
 * node or on a peer that must learn of it) are retried with the env loop's
 * backoff, within a budget: 5 consecutive failures of a command on an agent
 * (INTERNAL, UNKNOWN, or a terminal code on a peer), or 60 s of an
 * unreachable agent. Past it the env fails with FAILED_PRECONDITION
 * (NETWORK_FAILED), so a network that cannot be made never holds `lab up
 * --wait` for its full 10 minutes. The lab loop itself just retries with
 * its queue's backoff: its machines exist already.
 */
import { isIP } from "node:net";
import { Code, ProtoctlError } from "../../common/errors.js";
import { KeyedLock } from "../../common/keyed-lock.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import { EnvPhase, type EnvSpec, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import { agentCall } from "../agents/call.js";
import type { LabNetworkState } from "../labs/lab-state.js";
import type { Informer } from "../store/informer.js";
import type { Condition } from "../store/kv.js";
import type { ClusterStore, LabRecord } from "../store/store.js";
import type { ClusterCache } from "./cluster-cache.js";
import type { ReconcileResult } from "./queue.js";

/** Node label that overrides the underlay address taken from the agent's address. */
export const UNDERLAY_LABEL = "protoctl.io/underlay";

/** Errors of an agent that is (perhaps briefly) unreachable: retried for a while. */
const UNREACHABLE = new Set([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.ABORTED, Code.CANCELLED]);
/** Retry budget of a failing EnsureNetwork seen from `prepare`. */
export const NETWORK_RETRY = { tries: 5, unreachableMs: 60_000 };

/** Env phases whose machine holds (or is about to hold) a veth on its node. */
const PLACED = new Set([
  EnvPhase.ENV_PHASE_SCHEDULED,
  EnvPhase.ENV_PHASE_CREATED,
  EnvPhase.ENV_PHASE_RUNNING,
  EnvPhase.ENV_PHASE_STOPPED,
  EnvPhase.ENV_PHASE_FAILED,
  EnvPhase.ENV_PHASE_DELETING,
  EnvPhase.ENV_PHASE_MOVING,
]);

/** A streak of failed EnsureNetwork calls on one node for one network. */
export interface NetworkFailure {
  err: ProtoctlError;
  /** Consecutive failures on this node and bridge, and when the streak began. */
  tries: number;
  sinceMs: number;
}

interface NetRef {
  lab: string;
  network: string;
  net: LabNetworkState;
}

export class LabNetworks {
  /** `${node}\0${bridge}` → peers key last applied there. */
  private readonly applied = new Map<string, string>();
  private readonly locks = new KeyedLock();
  /** `${node}\0${bridge}` → the current streak of EnsureNetwork failures there. */
  private readonly failures = new Map<string, NetworkFailure>();
  /** `${node}\0${bridge}` → message of the last `lab.network_failed` event written. */
  private readonly reported = new Map<string, string>();
  /** Agent calls made (and failed), for the bench and tests. */
  readonly stats = { ensure: 0, delete: 0, ensureFailed: 0 };

  constructor(
    private readonly store: ClusterStore,
    private readonly cache: ClusterCache,
    readonly labs: Informer<LabRecord>,
    private readonly client: (node: string) => AgentServiceClient | undefined,
    private readonly fence: () => Condition[],
    private readonly timeoutMs = 30_000,
  ) {}

  /** Labs an env may belong to: its group, or any lab whose name prefixes it (spec already gone). */
  labsOfEnv(env: string): string[] {
    const group = this.cache.specs.get(env)?.value.group;
    if (group) return [group];
    return this.labs.names().filter((l) => env.startsWith(`${l}-`));
  }

  /**
   * Called by the env loop after placement, before CreateEnv: the env's lab
   * networks on `node` (and `node` as a peer on the others). Throws what the
   * env loop should do: a terminal code fails the env, anything else retries.
   */
  async prepare(node: string, spec: EnvSpec): Promise<void> {
    if (!spec.group) return;
    const bridges = bridgesOf(spec);
    if (bridges.length === 0) return;
    const rec = this.labs.get(spec.group)?.value ?? (await this.store.labStates.get(spec.group))?.value;
    if (!rec) return;
    for (const [network, net] of Object.entries(rec.state.networks)) {
      if (!bridges.includes(net.bridge)) continue;
      const failed = await this.converge({ lab: spec.group, network, net }, node);
      if (failed.size === 0) continue;
      // the env's own node first: its error is the one that decides
      const [at, f] = failed.has(node) ? [node, failed.get(node)!] : [...failed][0]!;
      throw prepareError(network, at, at === node, f, Date.now());
    }
  }

  async reconcile(lab: string): Promise<ReconcileResult> {
    const v = this.labs.get(lab);
    if (!v) {
      await this.dropUnknown(lab);
      return;
    }
    const rec = v.value;
    const nets = Object.entries(rec.state.networks).map(([network, net]) => ({ lab, network, net }));
    if (rec.deleting) {
      if (this.envsOfLab(lab, rec).length > 0) return { requeueAfterMs: 500 };
      await Promise.all(nets.map((n) => this.removeEverywhere(n)));
      const key = this.store.keys.labState(lab);
      const r = await this.store.batcher.commit({
        conditions: [{ key, modRevision: v.modRevision }, ...this.fence()],
        writes: [
          { op: "delete", key },
          await this.store.events.write({ kind: "lab.deleted", subject: `lab/${lab}`, message: "deleted" }),
        ],
      });
      if (r.succeeded) this.labs.applyLocal(lab, undefined, r.revision);
      return r.succeeded ? undefined : { requeueAfterMs: 100 };
    }
    const failed = await Promise.all(nets.map((n) => this.converge(n)));
    const first = failed.flatMap((m, i) => [...m].map(([node, f]) => ({ net: nets[i]!, node, f })))[0];
    // networks removed from the spec: gone from every node
    const live = new Set(nets.map((n) => n.net.bridge));
    for (const k of [...this.applied.keys()]) {
      const [node, bridge] = k.split("\0") as [string, string];
      if (bridge.startsWith("pl") && !live.has(bridge) && !this.bridgeInAnyLab(bridge)) {
        await this.deleteOn(node, bridge);
      }
    }
    if (first) {
      // retried with the queue's backoff (recorded as an event already)
      throw new ProtoctlError(
        first.f.err.code,
        `network ${first.net.network} on ${first.node}: ${first.f.err.message}`,
        { reason: first.f.err.reason },
      );
    }
    return;
  }

  /**
   * Brings one network to its desired node set (plus `also`, the node being
   * prepared). Resolves with the nodes whose EnsureNetwork failed (recorded);
   * a failed removal rejects.
   */
  private converge(ref: NetRef, also?: string): Promise<Map<string, NetworkFailure>> {
    return this.locks.run(ref.net.bridge, async () => {
      const failed = new Map<string, NetworkFailure>();
      const want = this.nodesOf(ref);
      if (also) want.add(also);
      const nodes = [...want].filter((n) => this.cache.isReady(n)).sort();
      const addr = new Map(nodes.map((n) => [n, this.underlay(n)]));
      const calls: Promise<unknown>[] = [];
      for (const node of nodes) {
        const local = addr.get(node) ?? "";
        const peers = nodes
          .filter((n) => n !== node)
          .map((n) => addr.get(n))
          .filter((a): a is string => !!a && a !== local)
          .sort();
        const key = `${ref.net.vni}|${local}|${peers.join(",")}`;
        const k = `${node}\0${ref.net.bridge}`;
        if (this.applied.get(k) === key) continue;
        calls.push(
          this.call(node, (c) =>
            agentCall(
              c.ensureNetwork.bind(c),
              {
                name: ref.net.bridge,
                vni: local ? ref.net.vni : 0,
                localAddress: local,
                peers,
                gateway: "",
                mtu: 0,
              },
              this.timeoutMs,
            ),
          ).then(
            () => {
              this.stats.ensure++;
              this.applied.set(k, key);
              this.failures.delete(k);
              this.reported.delete(k);
            },
            async (err: unknown) => {
              this.stats.ensureFailed++;
              const pe = ProtoctlError.from(err);
              const prev = this.failures.get(k);
              const f = { err: pe, tries: (prev?.tries ?? 0) + 1, sinceMs: prev?.sinceMs ?? Date.now() };
              this.failures.set(k, f);
              failed.set(node, f);
              await this.report(ref, node, pe);
            },
          ),
        );
      }
      // nodes that no longer hold a machine of this network
      for (const k of [...this.applied.keys()]) {
        const [node, bridge] = k.split("\0") as [string, string];
        if (bridge === ref.net.bridge && !want.has(node)) calls.push(this.deleteOn(node, bridge));
      }
      const results = await Promise.allSettled(calls);
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (rejected) throw ProtoctlError.from(rejected.reason);
      return failed;
    });
  }

  /** A `lab.network_failed` event, once per node, bridge and message. */
  private async report(ref: NetRef, node: string, err: ProtoctlError): Promise<void> {
    const k = `${node}\0${ref.net.bridge}`;
    const message = `EnsureNetwork of network ${ref.network} (${ref.net.bridge}) on ${node} failed: ${err.message}`;
    if (this.reported.get(k) === message) return;
    this.reported.set(k, message);
    await this.store.events.emit({
      kind: "lab.network_failed",
      subject: `lab/${ref.lab}`,
      message,
      node,
      attributes: {
        network: ref.network,
        bridge: ref.net.bridge,
        code: Code[err.code] ?? "",
        reason: err.reason,
      },
    });
  }

  /** Nodes where a machine of this network is placed (or still being deleted). */
  private nodesOf(ref: NetRef): Set<string> {
    const out = new Set<string>();
    for (const st of this.cache.status.list()) {
      const s = st.value;
      if (!s.node || !PLACED.has(s.phase)) continue;
      const name = this.cache.status.collection.nameOf(st.key) ?? "";
      const spec = this.cache.specs.get(name)?.value;
      if (spec) {
        if (spec.group === ref.lab && bridgesOf(spec).includes(ref.net.bridge)) out.add(s.node);
      } else if (name.startsWith(`${ref.lab}-`)) {
        // spec gone, machine not yet: keep its node on every network of the lab until it is
        out.add(s.node);
      }
    }
    return out;
  }

  /** Envs of a lab that still exist (spec or status). */
  private envsOfLab(lab: string, rec: LabRecord): string[] {
    const names = new Set(Object.values(rec.state.machines).map((m) => m.envName));
    const out: string[] = [];
    for (const n of new Set([...this.cache.specs.names(), ...this.cache.status.names()])) {
      if (names.has(n) || this.cache.specs.get(n)?.value.group === lab) out.push(n);
    }
    return out;
  }

  private async removeEverywhere(ref: NetRef): Promise<void> {
    await this.locks.run(ref.net.bridge, async () => {
      // every Ready node: after a leader change, `applied` does not know where the bridge was made
      const nodes = new Set(this.cache.nodes.names().filter((n) => this.cache.isReady(n)));
      for (const k of this.applied.keys()) {
        const [node, bridge] = k.split("\0") as [string, string];
        if (bridge === ref.net.bridge) nodes.add(node);
      }
      await Promise.all([...nodes].map((n) => this.deleteOn(n, ref.net.bridge)));
    });
  }

  private async dropUnknown(_lab: string): Promise<void> {
    // a lab record deleted behind our back: its bridges stay until `lab down` of a new record
  }

  private bridgeInAnyLab(bridge: string): boolean {
    return this.labs
      .list()
      .some((l) => Object.values(l.value.state.networks).some((n) => n.bridge === bridge));
  }

  private async deleteOn(node: string, bridge: string): Promise<void> {
    const k = `${node}\0${bridge}`;
    if (!this.cache.isReady(node)) {
      // unreachable: the agent keeps it until the lab is applied or deleted again
      this.applied.delete(k);
      return;
    }
    await this.call(node, (c) => agentCall(c.deleteNetwork.bind(c), { name: bridge }, this.timeoutMs)).catch(
      (err) => {
        if (ProtoctlError.from(err).code !== Code.NOT_FOUND) throw err;
      },
    );
    this.stats.delete++;
    this.applied.delete(k);
    this.failures.delete(k);
    this.reported.delete(k);
  }

  /** The node's underlay address for VXLAN: its label, else the host part of its agent address. */
  underlay(node: string): string | undefined {
    const label = this.cache.nodes.get(node)?.value.labels[UNDERLAY_LABEL];
    if (label && isIP(label)) return label;
    const a = this.cache.nodeAddress(node);
    if (!a || a.startsWith("unix:")) return undefined;
    const host = a.startsWith("[") ? a.slice(1, a.indexOf("]")) : a.replace(/:\d+$/, "");
    return isIP(host) ? host : undefined;
  }

  private call<T>(node: string, fn: (c: AgentServiceClient) => Promise<T>): Promise<T> {
    const c = this.client(node);
    if (!c) return Promise.reject(new ProtoctlError(Code.UNAVAILABLE, `node ${node} has no address`));
    return fn(c);
  }
}

/**
 * What `prepare` throws for a failed network: the agent's own error when it
 * is terminal on the env's node; a retryable error within the budget; past
 * it, FAILED_PRECONDITION (NETWORK_FAILED) so the env fails.
 */
export function prepareError(
  network: string,
  node: string,
  ownNode: boolean,
  f: NetworkFailure,
  nowMs: number,
): ProtoctlError {
  const { err } = f;
  const what = `network ${network} on ${node}: ${err.message}`;
  if (ownNode && !err.retryable) {
    return new ProtoctlError(err.code, what, { reason: err.reason, subject: err.subject, hint: err.hint });
  }
  const spent = UNREACHABLE.has(err.code)
    ? nowMs - f.sinceMs >= NETWORK_RETRY.unreachableMs && f.tries >= NETWORK_RETRY.tries
    : f.tries >= NETWORK_RETRY.tries;
  if (spent) {
    return new ProtoctlError(Code.FAILED_PRECONDITION, `${what} (failed ${f.tries} times)`, {
      reason: "NETWORK_FAILED",
      hint: "see `protoctl events` and the agent's log on that node; `lab up` again retries",
    });
  }
  // a terminal code from a peer fails this env only past the budget: until then, retry
  return new ProtoctlError(!err.retryable ? Code.UNAVAILABLE : err.code, what, {
    reason: err.reason,
  });
}

/** Bridges a spec attaches to. */
export function bridgesOf(spec: EnvSpec): string[] {
  return (spec.network?.attachments ?? [])
    .filter((a) => (a.mode || spec.network?.mode) === NetworkMode.NETWORK_MODE_BRIDGE && a.bridge)
    .map((a) => a.bridge);
}
