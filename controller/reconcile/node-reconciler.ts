/**
 * The node loop: notices Ready/NotReady transitions (lease-bound liveness
 * keys appearing and vanishing), records events, hands the node's envs to
 * the env loop (to verify after a return, to mark Lost after the grace
 * period), and sweeps orphans from a returning node: envs the agent still
 * runs that the store has placed elsewhere, marked Lost or deleted meanwhile.
 */

import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import { agentCall } from "../agents/call.js";
import type { ControllerContext } from "../context.js";
import type { ClusterCache } from "./cluster-cache.js";
import type { EnvReconciler } from "./env-reconciler.js";
import type { ReconcileResult, WorkQueue } from "./queue.js";

export class NodeReconciler {
  private readonly lastReady = new Map<string, boolean>();
  private readonly lostReported = new Set<string>();

  constructor(
    private readonly ctx: ControllerContext,
    private readonly cache: ClusterCache,
    private readonly envs: EnvReconciler,
    private readonly envQueue: WorkQueue,
  ) {}

  async reconcile(node: string): Promise<ReconcileResult> {
    const rec = this.cache.nodes.get(node);
    const ready = rec !== undefined && this.cache.isReady(node);
    const prev = this.lastReady.get(node);
    if (!rec) {
      this.lastReady.delete(node);
      for (const env of this.cache.envsOn(node)) this.envQueue.add(env);
      return;
    }
    if (ready) {
      this.lostReported.delete(node);
      if (prev !== true) {
        if (prev === false) {
          await this.ctx.store.events.emit({
            kind: "node.ready",
            subject: `node/${node}`,
            message: `node ${node} is Ready`,
            node,
          });
        }
        await this.sweepOrphans(node);
        for (const env of this.cache.envsOn(node)) {
          this.envs.verify.add(env);
          this.envQueue.add(env);
        }
      }
      // capacity or bases may have changed: pending envs get another chance
      for (const env of this.envs.pending) this.envQueue.add(env);
      // draining: the env loop moves restart=ALWAYS envs off this node
      if (rec.value.draining) for (const env of this.cache.envsOn(node)) this.envQueue.add(env);
      this.lastReady.set(node, true);
      return;
    }
    if (prev !== false) {
      this.lastReady.set(node, false);
      if (prev === true) {
        await this.ctx.store.events.emit({
          kind: "node.notready",
          subject: `node/${node}`,
          message: `node ${node} stopped heartbeating`,
          node,
        });
      }
    }
    const grace = this.ctx.config.reconcile.lostGraceSeconds * 1000;
    const down = this.cache.notReadyForMs(node);
    if (down < grace) return { requeueAfterMs: grace - down + 50 };
    if (!this.lostReported.has(node)) {
      this.lostReported.add(node);
      await this.ctx.store.events.emit({
        kind: "node.lost",
        subject: `node/${node}`,
        message: `node ${node} NotReady for ${Math.round(down / 1000)}s; its envs are lost`,
        node,
      });
    }
    for (const env of this.cache.envsOn(node)) this.envQueue.add(env);
    return;
  }

  private async sweepOrphans(node: string): Promise<void> {
    const address = this.cache.nodeAddress(node);
    if (!address) return;
    const client = this.ctx.agents.get(node, address);
    let envs: import("../../proto/gen/protoctl/v1/types.js").Env[];
    try {
      envs = (await agentCall(client.listEnvs.bind(client), {}, 15_000)).envs;
    } catch (err) {
      this.ctx.log.warn(
        { node, err: (err as Error).message },
        "could not list envs on node for the orphan sweep",
      );
      return;
    }
    for (const e of envs) {
      const name = e.spec?.name;
      if (!name) continue;
      const st = this.cache.status.get(name)?.value;
      // A Lost env was given up while its node was away: the copy that comes back with the node
      // is fenced off like one placed elsewhere (it must not run unseen, nor twice after a new create).
      if (st && st.node === node && st.phase !== EnvPhase.ENV_PHASE_LOST) continue;
      this.ctx.log.info({ node, env: name }, "deleting orphan env (placed elsewhere, lost or deleted)");
      await agentCall(client.deleteEnv.bind(client), { name }, 60_000).catch((err) =>
        this.ctx.log.warn({ node, env: name, err: (err as Error).message }, "orphan delete failed"),
      );
    }
  }
}
