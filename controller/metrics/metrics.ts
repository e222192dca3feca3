/**
 * The controller's Prometheus metrics, in one registry per process. Events
 * (calls, placements, retries, etcd round trips, elections) are counted
 * where they happen; state (envs, nodes, pushes, leadership) is read from
 * each running replica when scraped (`addStateSource`). Names follow the
 * Prometheus conventions; the list is in docs/metrics.md.
 */

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { FAST_BUCKETS, LATENCY_BUCKETS } from "../../common/metrics/buckets.js";
import { grpcServerMetrics } from "../../common/metrics/grpc-interceptor.js";

export const controllerRegistry = new Registry();
collectDefaultMetrics({ register: controllerRegistry, prefix: "protoctl_controller_process_" });
const registers = [controllerRegistry];

export const { handled: grpcHandled, seconds: grpcSeconds } = grpcServerMetrics(
  "controller",
  "ControlService",
  controllerRegistry,
);

export const envOperationSeconds = new Histogram({
  name: "protoctl_controller_env_operation_seconds",
  help: "Env operations seen by the controller, from the request to its answer (with wait: to Running).",
  labelNames: ["operation", "outcome"] as const,
  buckets: LATENCY_BUCKETS,
  registers,
});

export const scheduleSeconds = new Histogram({
  name: "protoctl_scheduler_placement_seconds",
  help: "Time the scheduler took to place one env (one pass over the cluster view).",
  buckets: FAST_BUCKETS,
  registers,
});

export const placements = new Counter({
  name: "protoctl_scheduler_placements_total",
  help: "Placement decisions: result placed (with the node) or unschedulable.",
  labelNames: ["result", "node"] as const,
  registers,
});

export const reconcileRetries = new Counter({
  name: "protoctl_reconcile_retries_total",
  help: "Reconcile passes that failed and were queued again with backoff, by queue.",
  labelNames: ["queue"] as const,
  registers,
});

export const reconcileFailures = new Counter({
  name: "protoctl_reconcile_errors_total",
  help: "Reconcile passes that failed (retried or terminal), by queue.",
  labelNames: ["queue", "terminal"] as const,
  registers,
});

export const etcdSeconds = new Histogram({
  name: "protoctl_etcd_request_seconds",
  help: "etcd KV round trips by operation (range, put, txn, delete).",
  labelNames: ["operation", "outcome"] as const,
  buckets: FAST_BUCKETS,
  registers,
});

export const elections = new Counter({
  name: "protoctl_leader_elections_total",
  help: "Times this process's replica(s) won the leader election.",
  registers,
});

export const depositions = new Counter({
  name: "protoctl_leader_losses_total",
  help: "Times this process's replica(s) stopped leading (lease lost, shutdown).",
  registers,
});

// ---- state read at scrape time ----

/** What a running replica offers to the state gauges. */
export interface StateSource {
  replica: string;
  isLeader(): boolean;
  /** Queue lengths and keys in progress while leading. */
  queues(): Array<{ queue: string; depth: number; processing: number }>;
  /** Cluster state from etcd; undefined when not wanted from this replica. */
  snapshot(): Promise<ClusterSnapshot>;
}

export interface ClusterSnapshot {
  envs: Array<{ node: string; phase: string }>;
  nodes: Array<{ name: string; ready: boolean; cordoned: boolean }>;
  attachments: Array<{ base: string; version: number; node: string; phase: string; fraction: number }>;
}

const sources = new Set<StateSource>();

/** Registers a replica; returns the function that removes it. */
export function addStateSource(s: StateSource): () => void {
  sources.add(s);
  return () => sources.delete(s);
}

new Gauge({
  name: "protoctl_leader",
  help: "1 while the replica leads (schedules and reconciles), else 0.",
  labelNames: ["replica"] as const,
  registers,
  collect() {
    this.reset();
    for (const s of sources) this.set({ replica: s.replica }, s.isLeader() ? 1 : 0);
  },
});

new Gauge({
  name: "protoctl_reconcile_queue_depth",
  help: "Keys waiting in a reconcile queue (leader only).",
  labelNames: ["queue"] as const,
  registers,
  collect() {
    this.reset();
    for (const s of sources) for (const q of s.queues()) this.inc({ queue: q.queue }, q.depth);
  },
});

new Gauge({
  name: "protoctl_reconcile_in_progress",
  help: "Keys being reconciled right now (leader only).",
  labelNames: ["queue"] as const,
  registers,
  collect() {
    this.reset();
    for (const s of sources) for (const q of s.queues()) this.inc({ queue: q.queue }, q.processing);
  },
});

/**
 * One etcd read per scrape, shared by the gauges below: prom-client starts every metric's
 * collect in the same tick, so they all find the read in flight. Once it has settled, the next
 * scrape reads again (a time window here served a scrape taken right after another the
 * cluster as it was before, e.g. an env created in between not yet counted).
 */
let pending: Promise<ClusterSnapshot | undefined> | undefined;
function snapshot(): Promise<ClusterSnapshot | undefined> {
  if (pending) return pending;
  const first = [...sources][0];
  const p = first ? first.snapshot().catch(() => undefined) : Promise.resolve(undefined);
  pending = p;
  // every collect of this scrape already holds it when it settles
  void p.then(() => {
    if (pending === p) pending = undefined;
  });
  return p;
}

new Gauge({
  name: "protoctl_envs",
  help: "Environments by phase and node (node empty while not placed).",
  labelNames: ["phase", "node"] as const,
  registers,
  async collect() {
    const snap = await snapshot();
    this.reset();
    for (const e of snap?.envs ?? []) this.inc({ phase: e.phase, node: e.node });
  },
});

new Gauge({
  name: "protoctl_nodes",
  help: "Nodes by state (ready, not_ready) and whether cordoned.",
  labelNames: ["state", "cordoned"] as const,
  registers,
  async collect() {
    const snap = await snapshot();
    this.reset();
    for (const state of ["ready", "not_ready"])
      for (const cordoned of ["true", "false"]) this.set({ state, cordoned }, 0);
    for (const n of snap?.nodes ?? [])
      this.inc({ state: n.ready ? "ready" : "not_ready", cordoned: String(n.cordoned) });
  },
});

new Gauge({
  name: "protoctl_push_attachments",
  help: "Base versions pushed to nodes, by base, version, node and attachment phase.",
  labelNames: ["base", "version", "node", "phase"] as const,
  registers,
  async collect() {
    const snap = await snapshot();
    this.reset();
    for (const a of snap?.attachments ?? [])
      this.set({ base: a.base, version: String(a.version), node: a.node, phase: a.phase }, 1);
  },
});

new Gauge({
  name: "protoctl_push_hydrated_ratio",
  help: "Fraction (0..1) of a pushed base version copied locally on a node (1: local, NBD dropped).",
  labelNames: ["base", "version", "node"] as const,
  registers,
  async collect() {
    const snap = await snapshot();
    this.reset();
    for (const a of snap?.attachments ?? [])
      this.set({ base: a.base, version: String(a.version), node: a.node }, a.fraction);
  },
});
