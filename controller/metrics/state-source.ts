/** A controller replica as a metrics StateSource: leadership, queues, and the cluster read from etcd. */
import { AttachmentPhase, EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import type { ReconcileManager } from "../reconcile/manager.js";
import { listNodes } from "../server/node-api.js";
import type { ClusterSnapshot, StateSource } from "./metrics.js";

/** "ENV_PHASE_RUNNING" -> "running": label values stay short and stable. */
export function enumLabel(name: string | undefined, prefix: string): string {
  return (name ?? "unknown").replace(prefix, "").toLowerCase();
}

export function replicaSource(
  ctx: ControllerContext,
  manager: () => ReconcileManager | undefined,
): StateSource {
  return {
    replica: ctx.id,
    isLeader: () => ctx.leader.isLeader(),
    queues: () => {
      const m = manager();
      if (!m) return [];
      return [
        { queue: "env", depth: m.envQueue.length, processing: m.envQueue.processing },
        { queue: "node", depth: m.nodeQueue.length, processing: m.nodeQueue.processing },
        { queue: "lab", depth: m.labQueue.length, processing: m.labQueue.processing },
      ];
    },
    snapshot: () => clusterSnapshot(ctx),
  };
}

export async function clusterSnapshot(ctx: ControllerContext): Promise<ClusterSnapshot> {
  const [status, nodes, atts] = await Promise.all([
    ctx.store.envStatus.list(),
    listNodes(ctx),
    ctx.store.listAttachments(),
  ]);
  return {
    envs: status.items.map((s) => ({
      node: s.value.node,
      phase: enumLabel(EnvPhase[s.value.phase], "ENV_PHASE_"),
    })),
    nodes: nodes.map((n) => ({ name: n.name, ready: n.state === 1, cordoned: n.cordoned })),
    attachments: atts.map(({ value: a }) => ({
      base: a.base,
      version: a.version,
      node: a.node,
      phase: enumLabel(AttachmentPhase[a.phase], "ATTACHMENT_PHASE_"),
      fraction: a.phase === AttachmentPhase.ATTACHMENT_PHASE_LOCAL ? 1 : a.hydratedFraction,
    })),
  };
}
