/**
 * Runs the loops while this replica leads: builds the cluster cache, maps
 * informer changes to queue keys (env name, node name), and drives the
 * reconcilers with their queues. Created on election, stopped on loss of
 * leadership or shutdown; a new leader starts from a fresh list of etcd, so
 * nothing depends on what a previous leader held in memory.
 */
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import type { Condition } from "../store/kv.js";
import { ClusterCache } from "./cluster-cache.js";
import { EnvReconciler } from "./env-reconciler.js";
import { NodeReconciler } from "./node-reconciler.js";
import { WorkQueue } from "./queue.js";

export class ReconcileManager {
  readonly cache: ClusterCache;
  readonly envQueue: WorkQueue;
  readonly nodeQueue: WorkQueue;
  readonly envs: EnvReconciler;
  readonly nodes: NodeReconciler;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly ctx: ControllerContext,
    fence: () => Condition[],
  ) {
    const rc = ctx.config.reconcile;
    const backoff = { baseMs: rc.backoffBaseMs, maxMs: rc.backoffMaxMs };
    this.cache = new ClusterCache(ctx.store, ctx.config.scheduler.propagation);
    this.envQueue = new WorkQueue({ backoff, concurrency: rc.concurrency });
    this.nodeQueue = new WorkQueue({ backoff, concurrency: 8 });
    this.envs = new EnvReconciler(ctx, this.cache, this.envQueue, fence);
    this.nodes = new NodeReconciler(ctx, this.cache, this.envs, this.envQueue);
  }

  async start(): Promise<void> {
    const c = this.cache;
    // A new env's spec and status are written together but arrive on two
    // watch streams: act when the second half lands, not on each.
    c.specs.onChange((name, cur) => {
      if (!cur || c.status.get(name)) this.envQueue.add(name);
    });
    c.status.onChange((name, cur, prev, local) => {
      // our own writes (applied locally, or their watch event overtaking the
      // txn reply while the env is being reconciled): that pass carries on
      if (local || this.envQueue.isActive(name)) return;
      if (cur && !prev && !c.specs.get(name)) return;
      if (!cur || !prev || cur.value.phase !== prev.value.phase || cur.value.node !== prev.value.node) {
        this.envQueue.add(name);
      }
    });
    c.alive.onChange((name) => this.nodeQueue.add(name));
    c.nodes.onChange((name) => this.nodeQueue.add(name));
    c.inventory.onChange((name) => this.nodeQueue.add(name));
    await c.start();
    for (const name of c.nodes.names()) this.nodeQueue.add(name);
    for (const name of new Set([...c.specs.names(), ...c.status.names()])) this.envQueue.add(name);
    const log = this.ctx.log;
    this.running = Promise.all([
      this.envQueue.run(
        (k) => this.envs.reconcile(k),
        (key, err, retry) =>
          log.warn({ env: key, err: (err as Error).message, retryInMs: retry }, "env reconcile failed"),
      ),
      this.nodeQueue.run(
        (k) => this.nodes.reconcile(k),
        (key, err, retry) =>
          log.warn({ node: key, err: (err as Error).message, retryInMs: retry }, "node reconcile failed"),
      ),
    ]);
    log.info({ nodes: c.nodes.size, envs: c.specs.size }, "reconcile loops started");
  }

  /** Counts for metrics and the bench. */
  stats(): Record<string, number> {
    let running = 0;
    for (const s of this.cache.status.list()) if (s.value.phase === EnvPhase.ENV_PHASE_RUNNING) running++;
    return {
      envs: this.cache.specs.size,
      running,
      queued: this.envQueue.length,
      processing: this.envQueue.processing,
    };
  }

  async stop(): Promise<void> {
    this.ctx.log.info({ timing: this.envs.timing }, "reconcile loops stopping");
    this.envQueue.shutdown();
    this.nodeQueue.shutdown();
    await this.cache.stop();
    await this.running;
  }
}
