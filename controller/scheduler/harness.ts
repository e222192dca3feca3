/**
 * Test harness for the scheduler (after Nomad's scheduler/testing.go): build
 * a view from terse node descriptions, run requests one after another with
 * each placement applied to the next view, and keep every plan for asserts.
 */
import { schedule } from "./schedule.js";
import { type ClusterView, freezeView, type NodeView, type Plan, type ScheduleRequest } from "./view.js";

export interface NodeSpec {
  name: string;
  ready?: boolean;
  cordoned?: boolean;
  draining?: boolean;
  labels?: Record<string, string>;
  memoryBytes?: number;
  poolSizeBytes?: number;
  poolFreeBytes?: number;
  cpus?: number;
  bases?: string[];
  envs?: number;
  allocatedMemory?: number;
  allocatedDisk?: number;
  groups?: Record<string, number>;
}

export const GiB = 2 ** 30;
export const MiB = 2 ** 20;

export function node(spec: NodeSpec): NodeView {
  return {
    name: spec.name,
    ready: spec.ready ?? true,
    cordoned: spec.cordoned ?? false,
    draining: spec.draining ?? false,
    labels: spec.labels ?? {},
    capacity: {
      memoryBytes: spec.memoryBytes ?? 8 * GiB,
      poolSizeBytes: spec.poolSizeBytes ?? 20 * GiB,
      poolFreeBytes: spec.poolFreeBytes ?? spec.poolSizeBytes ?? 20 * GiB,
      cpus: spec.cpus ?? 4,
    },
    allocated: {
      memoryBytes: spec.allocatedMemory ?? 0,
      diskBytes: spec.allocatedDisk ?? 0,
      envs: spec.envs ?? 0,
    },
    baseVersions: new Set(spec.bases ?? ["debian@1"]),
    groups: new Map(Object.entries(spec.groups ?? {})),
  };
}

export function request(env: string, over: Partial<ScheduleRequest> = {}): ScheduleRequest {
  return { env, base: "debian", version: 1, memoryBytes: 0, diskBytes: 0, ...over };
}

/** Applies a placement to a view, returning a new view (the old one is untouched). */
export function place(view: ClusterView, nodeName: string, req: ScheduleRequest): ClusterView {
  return freezeView(
    view.nodes.map((n) => {
      if (n.name !== nodeName) return n;
      const groups = new Map(n.groups);
      if (req.group) groups.set(req.group, (groups.get(req.group) ?? 0) + 1);
      return {
        ...n,
        allocated: {
          memoryBytes: n.allocated.memoryBytes + req.memoryBytes,
          diskBytes: n.allocated.diskBytes + req.diskBytes,
          envs: n.allocated.envs + 1,
        },
        groups,
      };
    }),
    view.propagation,
  );
}

export class SchedulerHarness {
  view: ClusterView;
  readonly plans: { request: ScheduleRequest; plan: Plan }[] = [];

  constructor(nodes: NodeSpec[], opts: { propagation?: boolean } = {}) {
    this.view = freezeView(nodes.map(node), opts.propagation ?? false);
  }

  /** Schedules and, when placed, applies the placement to the harness view. */
  run(req: ScheduleRequest): Plan {
    const plan = schedule(this.view, req);
    this.plans.push({ request: req, plan });
    if (plan.node) this.view = place(this.view, plan.node, req);
    return plan;
  }

  /** Envs placed per node, from the recorded plans. */
  placements(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const { plan } of this.plans) if (plan.node) out[plan.node] = (out[plan.node] ?? 0) + 1;
    return out;
  }
}
