import type { NodeHeartbeat } from "../../proto/gen/protoctl/v1/control.js";

/**
 * Why a live node cannot take envs: its agent reported the "machines"
 * capability not ok (agent/host/machines/host-check.ts: e.g. no cgroup tree
 * in its mount namespace). Such a node is NotReady, with this reason.
 */
export function machinesProblem(inv: NodeHeartbeat | undefined): string | undefined {
  const c = inv?.capabilities.find((x) => x.name === "machines");
  return c && !c.ok ? c.detail || "the agent cannot run machines" : undefined;
}
