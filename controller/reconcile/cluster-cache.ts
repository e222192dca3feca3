/**
 * The leader's picture of the cluster: informers over nodes, inventories,
 * liveness, env specs and statuses, plus per-node allocation tallies kept up
 * to date incrementally, so building a scheduler view costs O(nodes), not
 * O(envs). A placement decided but not yet written is "assumed" into the
 * tallies at once (single-threaded: decide and assume happen together), so
 * concurrent reconciles never double-book a node.
 */

import { baseRefOf } from "../../common/base-ref.js";
import type { NodeHeartbeat } from "../../proto/gen/protoctl/v1/control.js";
import { EnvPhase, type EnvSpec, type EnvStatus, type Node } from "../../proto/gen/protoctl/v1/types.js";
import { machinesProblem } from "../membership/capabilities.js";
import type { ClusterView, NodeView } from "../scheduler/view.js";
import { Informer } from "../store/informer.js";
import type { AliveRecord, ClusterStore } from "../store/store.js";

interface Alloc {
  node: string;
  memoryBytes: number;
  diskBytes: number;
  group: string;
}

interface Tally {
  memoryBytes: number;
  diskBytes: number;
  envs: number;
  groups: Map<string, number>;
}

/** Phases in which an env holds resources on its node. */
const HOLDING = new Set([
  EnvPhase.ENV_PHASE_SCHEDULED,
  EnvPhase.ENV_PHASE_CREATED,
  EnvPhase.ENV_PHASE_RUNNING,
  EnvPhase.ENV_PHASE_STOPPED,
  EnvPhase.ENV_PHASE_FAILED,
  EnvPhase.ENV_PHASE_DELETING,
  EnvPhase.ENV_PHASE_MOVING,
]);

export class ClusterCache {
  readonly nodes: Informer<Node>;
  readonly inventory: Informer<NodeHeartbeat>;
  readonly alive: Informer<AliveRecord>;
  readonly specs: Informer<EnvSpec>;
  readonly status: Informer<EnvStatus>;
  private readonly allocs = new Map<string, Alloc>();
  private readonly tallies = new Map<string, Tally>();
  private readonly baseSets = new Map<string, Set<string>>();
  /** When each node was last seen turning NotReady (or when we started, for nodes already down). */
  readonly notReadySince = new Map<string, number>();
  private readonly startedMs = Date.now();
  private readonly nodeViews = new Map<string, NodeView>();
  private readonly dirty = new Set<string>();
  private allDirty = true;
  private cachedView: ClusterView | undefined;

  constructor(
    readonly store: ClusterStore,
    private readonly propagation: boolean,
  ) {
    this.nodes = new Informer(store.nodes);
    this.inventory = new Informer(store.inventory);
    this.alive = new Informer(store.alive);
    this.specs = new Informer(store.envSpecs);
    this.status = new Informer(store.envStatus);
    this.status.onChange((name, cur) => this.setAlloc(name, this.allocFromStore(name, cur?.value)));
    this.specs.onChange((name) =>
      this.setAlloc(name, this.allocFromStore(name, this.status.get(name)?.value)),
    );
    this.nodes.onChange((name) => this.dirty.add(name));
    this.inventory.onChange((name, cur) => {
      this.dirty.add(name);
      this.baseSets.set(name, new Set((cur?.value.bases ?? []).map((b) => baseRefOf(b))));
    });
    this.alive.onChange((name, cur, prev) => {
      this.dirty.add(name);
      if (cur) this.notReadySince.delete(name);
      else if (prev) this.notReadySince.set(name, Date.now());
    });
  }

  async start(): Promise<void> {
    // inventories and liveness before envs: the first reconciles need nodes
    await Promise.all([this.nodes.start(), this.inventory.start(), this.alive.start()]);
    for (const it of this.inventory.list()) {
      const name = this.store.inventory.nameOf(it.key)!;
      this.baseSets.set(name, new Set(it.value.bases.map((b) => baseRefOf(b))));
    }
    for (const name of this.nodes.names())
      if (!this.alive.get(name)) this.notReadySince.set(name, this.startedMs);
    await this.specs.start();
    await this.status.start();
    for (const it of this.status.list()) {
      const name = this.store.envStatus.nameOf(it.key)!;
      this.setAlloc(name, this.allocFromStore(name, it.value));
    }
  }

  async stop(): Promise<void> {
    await Promise.all([this.nodes, this.inventory, this.alive, this.specs, this.status].map((i) => i.stop()));
  }

  isReady(node: string): boolean {
    return this.alive.get(node) !== undefined;
  }

  /** Milliseconds the node has been NotReady (0 when ready). */
  notReadyForMs(node: string, now = Date.now()): number {
    if (this.isReady(node)) return 0;
    return now - (this.notReadySince.get(node) ?? this.startedMs);
  }

  nodeAddress(node: string): string | undefined {
    return this.inventory.get(node)?.value.address || this.nodes.get(node)?.value.address;
  }

  /** Highest version of a base held by any node or recorded (0 when unknown). */
  latestVersion(base: string): number {
    let v = 0;
    for (const s of this.baseSets.values()) {
      for (const ref of s) {
        const at = ref.lastIndexOf("@");
        if (ref.slice(0, at) === base) v = Math.max(v, Number(ref.slice(at + 1)));
      }
    }
    return v;
  }

  /** Env names placed on a node (by status). */
  envsOn(node: string): string[] {
    const out: string[] = [];
    for (const [env, a] of this.allocs) if (a.node === node) out.push(env);
    return out;
  }

  /**
   * The scheduler's view. Node views are rebuilt only for nodes that changed
   * since the last call (a placement changes one node), and a view is reused
   * whole while nothing changed: during a burst this is most of the cost of
   * placing an env otherwise.
   */
  view(): ClusterView {
    if (this.cachedView && this.dirty.size === 0 && !this.allDirty) return this.cachedView;
    if (this.allDirty) {
      this.nodeViews.clear();
      for (const name of this.nodes.names()) this.nodeViews.set(name, this.buildNodeView(name));
    } else {
      for (const name of this.dirty) {
        if (this.nodes.get(name)) this.nodeViews.set(name, this.buildNodeView(name));
        else this.nodeViews.delete(name);
      }
    }
    this.dirty.clear();
    this.allDirty = false;
    this.cachedView = Object.freeze({
      nodes: Object.freeze([...this.nodeViews.values()]),
      propagation: this.propagation,
    });
    return this.cachedView;
  }

  private buildNodeView(name: string): NodeView {
    const n = this.nodes.get(name)!.value;
    const inv = this.inventory.get(name)?.value;
    const t = this.tallies.get(name);
    return Object.freeze({
      name,
      // alive but unable to run machines (its agent says why): no placements there
      ready: this.isReady(name) && !machinesProblem(inv),
      cordoned: n.cordoned,
      draining: n.draining,
      labels: n.labels,
      capacity: {
        memoryBytes: inv?.capacity?.memoryBytes ?? 0,
        poolSizeBytes: inv?.capacity?.poolSizeBytes ?? 0,
        poolFreeBytes: inv?.capacity?.poolFreeBytes ?? 0,
        cpus: inv?.capacity?.cpus ?? 0,
      },
      allocated: { memoryBytes: t?.memoryBytes ?? 0, diskBytes: t?.diskBytes ?? 0, envs: t?.envs ?? 0 },
      baseVersions: this.baseSets.get(name) ?? new Set<string>(),
      groups: t && t.groups.size > 0 ? new Map(t.groups) : EMPTY,
    });
  }

  /** Books a placement before its write lands (undone by `unassume`). */
  assume(env: string, node: string, spec: EnvSpec): void {
    this.setAlloc(env, allocOf(node, spec));
  }

  /** Drops an assumption, falling back to what the store says. */
  unassume(env: string): void {
    this.setAlloc(env, this.allocFromStore(env, this.status.get(env)?.value));
  }

  private allocFromStore(env: string, st: EnvStatus | undefined): Alloc | undefined {
    if (!st?.node || !HOLDING.has(st.phase)) return undefined;
    const spec = this.specs.get(env)?.value;
    return allocOf(st.node, spec);
  }

  private setAlloc(env: string, a: Alloc | undefined): void {
    const prev = this.allocs.get(env);
    if (prev) this.add(prev, -1);
    if (a) {
      this.allocs.set(env, a);
      this.add(a, 1);
    } else this.allocs.delete(env);
  }

  private add(a: Alloc, sign: 1 | -1): void {
    this.dirty.add(a.node);
    let t = this.tallies.get(a.node);
    if (!t) {
      t = { memoryBytes: 0, diskBytes: 0, envs: 0, groups: new Map() };
      this.tallies.set(a.node, t);
    }
    t.memoryBytes += sign * a.memoryBytes;
    t.diskBytes += sign * a.diskBytes;
    t.envs += sign;
    if (a.group) {
      const g = (t.groups.get(a.group) ?? 0) + sign;
      if (g <= 0) t.groups.delete(a.group);
      else t.groups.set(a.group, g);
    }
  }
}

const EMPTY: ReadonlyMap<string, number> = new Map();

function allocOf(node: string, spec: EnvSpec | undefined): Alloc {
  return {
    node,
    memoryBytes: spec?.resources?.memoryBytes ?? 0,
    diskBytes: spec?.resources?.diskBytes ?? 0,
    group: spec?.group ?? "",
  };
}
