/**
 * The agent's Prometheus metrics, in one registry per process. Calls are
 * counted and timed by the gRPC interceptor; pool, bases and attachments are
 * read from each running agent when scraped (several agents share a process
 * in tests, so state gauges carry the node). Listed in docs/metrics.md.
 */

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { LATENCY_BUCKETS, PUSH_BUCKETS } from "../../common/metrics/buckets.js";
import { grpcServerMetrics } from "../../common/metrics/grpc-interceptor.js";

export const agentRegistry = new Registry();
collectDefaultMetrics({ register: agentRegistry, prefix: "protoctl_agent_process_" });
const registers = [agentRegistry];

export const { handled: grpcHandled, seconds: grpcSeconds } = grpcServerMetrics(
  "agent",
  "AgentService",
  agentRegistry,
);

export const envOperationSeconds = new Histogram({
  name: "protoctl_agent_env_operation_seconds",
  help: "Env operations on the node (create: snapshot to running machine; exec: whole session).",
  labelNames: ["node", "operation", "outcome"] as const,
  buckets: LATENCY_BUCKETS,
  registers,
});

export const pushSeconds = new Histogram({
  name: "protoctl_agent_push_seconds",
  help: "A base version reaching this node: one Attach call (attach over NBD, and hydration when asked).",
  labelNames: ["node", "outcome"] as const,
  buckets: PUSH_BUCKETS,
  registers,
});

export const hydratedBytes = new Counter({
  name: "protoctl_agent_hydration_bytes_total",
  help: "Bytes of seed images copied locally (hydration); rate() is the throughput.",
  labelNames: ["node"] as const,
  registers,
});

export const hydrationThroughput = new Gauge({
  name: "protoctl_agent_hydration_last_bytes_per_second",
  help: "Copy rate of the last finished hydration of each base version on the node.",
  labelNames: ["node", "base", "version"] as const,
  registers,
});

/** What a running agent offers to the state gauges. */
export interface AgentStateSource {
  node: string;
  pool(): Promise<{ sizeBytes: number; usedBytes: number; freeBytes: number; bases: number }>;
  envs(): number;
  /** Attachments by phase ("attaching", "attached", "hydrating", "local", "failed"). */
  attachments(): Array<{ phase: string }>;
  /** Counts hydration progress since the last look (hydratedBytes). */
  observeHydration(): void;
}

const sources = new Set<AgentStateSource>();

export function addAgentSource(s: AgentStateSource): () => void {
  sources.add(s);
  return () => sources.delete(s);
}

type PoolFigures = Awaited<ReturnType<AgentStateSource["pool"]>>;
let poolRead: { at: number; p: Promise<Map<string, PoolFigures>> } | undefined;

/** One pool read per agent per scrape, shared by the pool gauges. */
function pools(): Promise<Map<string, PoolFigures>> {
  const now = Date.now();
  if (poolRead && now - poolRead.at < 500) return poolRead.p;
  const p = Promise.all(
    [...sources].map(async (s) => [s.node, await s.pool().catch(() => undefined)] as const),
  ).then((rows) => new Map(rows.filter((r): r is [string, PoolFigures] => r[1] !== undefined)));
  poolRead = { at: now, p };
  return p;
}

function poolGauge(name: string, help: string, pick: (p: PoolFigures) => number): void {
  new Gauge({
    name,
    help,
    labelNames: ["node"] as const,
    registers,
    async collect() {
      const all = await pools();
      this.reset();
      for (const [node, p] of all) this.set({ node }, pick(p));
    },
  });
}

poolGauge("protoctl_pool_size_bytes", "Size of the node's btrfs pool.", (p) => p.sizeBytes);
poolGauge("protoctl_pool_used_bytes", "Bytes used in the node's btrfs pool.", (p) => p.usedBytes);
poolGauge("protoctl_pool_free_bytes", "Bytes free in the node's btrfs pool.", (p) => p.freeBytes);
poolGauge("protoctl_pool_bases", "Base versions the node holds (local or attached).", (p) => p.bases);

new Gauge({
  name: "protoctl_agent_envs",
  help: "Environments the node holds (any state).",
  labelNames: ["node"] as const,
  registers,
  collect() {
    this.reset();
    for (const s of sources) this.set({ node: s.node }, s.envs());
  },
});

export const ATTACHMENT_PHASES = ["attaching", "attached", "hydrating", "local", "failed"];

new Gauge({
  name: "protoctl_nbd_attachments",
  help: "Base versions attached from another node, by phase (attached: reading over NBD; local: hydrated).",
  labelNames: ["node", "phase"] as const,
  registers,
  collect() {
    this.reset();
    for (const s of sources) {
      s.observeHydration();
      for (const phase of ATTACHMENT_PHASES) this.set({ node: s.node, phase }, 0);
      for (const a of s.attachments()) this.inc({ node: s.node, phase: a.phase });
    }
  },
});
