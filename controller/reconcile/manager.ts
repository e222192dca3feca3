/**
 * Runs the loops while this replica leads: builds the cluster cache, maps
 * informer changes to queue keys (env name, node name), and drives the
 * reconcilers with their queues. Created on election, stopped on loss of
 * leadership or shutdown; a new leader starts from a fresh list of etcd, so
 * nothing depends on what a previous leader held in memory.
 */
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { reconcileFailed } from "../metrics/instrument.js";
import { ensureUsable } from "../operations/push-requests.js";
import type { OperationRecord } from "../operations/record.js";
import { Informer } from "../store/informer.js";
import type { Condition } from "../store/kv.js";
import type { LabRecord } from "../store/store.js";
import { ClusterCache } from "./cluster-cache.js";
import { EnvReconciler } from "./env-reconciler.js";
import { ExpiryReconciler } from "./expiry.js";
import { LabNetworks } from "./lab-networks.js";
import { LabRollouts } from "./lab-rollout.js";
import { LayerForwarder } from "./layer-forwarder.js";
import { NodeReconciler } from "./node-reconciler.js";
import { OperationReconciler } from "./operation-reconciler.js";
import { WorkQueue } from "./queue.js";

export class ReconcileManager {
  readonly cache: ClusterCache;
  readonly envQueue: WorkQueue;
  readonly nodeQueue: WorkQueue;
  readonly envs: EnvReconciler;
  readonly nodes: NodeReconciler;
  readonly labQueue: WorkQueue;
  readonly labs: LabNetworks;
  readonly rolloutQueue: WorkQueue;
  readonly rollouts: LabRollouts;
  readonly layers: LayerForwarder;
  readonly opQueue: WorkQueue;
  readonly operations: OperationReconciler;
  readonly expiry: ExpiryReconciler;
  private readonly labInformer: Informer<LabRecord>;
  private readonly opInformer: Informer<OperationRecord>;
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
    // Placement on a node lacking the version (scheduler.propagation): attach it there first.
    if (ctx.config.scheduler.propagation) {
      this.envs.propagate = (node, base, version) => ensureUsable(ctx.store, node, base, version);
    }
    this.nodes = new NodeReconciler(ctx, this.cache, this.envs, this.envQueue);
    const agent = (node: string) => {
      const address = this.cache.nodeAddress(node);
      return address ? ctx.agents.get(node, address) : undefined;
    };
    // pushes wait on each other (a delta's parent): enough slots that a waiting one never starves
    this.opQueue = new WorkQueue({ backoff, concurrency: 32 });
    this.opInformer = new Informer(ctx.store.operations);
    this.operations = new OperationReconciler(ctx, fence);
    this.labQueue = new WorkQueue({ backoff, concurrency: 4 });
    this.labInformer = new Informer(ctx.store.labStates);
    this.labs = new LabNetworks(ctx.store, this.cache, this.labInformer, agent, fence);
    this.rolloutQueue = new WorkQueue({ backoff, concurrency: 4 });
    this.rollouts = new LabRollouts(ctx.store, this.cache, this.labInformer, agent, fence);
    this.layers = new LayerForwarder(ctx.store, (node) => {
      const c = agent(node);
      if (!c) throw new Error(`node ${node} has no address`);
      return c;
    });
    this.expiry = new ExpiryReconciler({
      store: ctx.store,
      specs: this.cache.specs,
      labs: this.labInformer,
      fence,
      log: ctx.log,
    });
    this.envs.prepare.push(
      (node, spec, version) => this.layers.ensure(node, spec, version),
      (node, spec) => this.labs.prepare(node, spec),
    );
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
    // lab networks follow placements: a machine placed, moved or gone changes its networks' nodes
    c.status.onChange((name, cur, prev) => {
      if (cur && prev && cur.value.node === prev.value.node && cur.value.phase === prev.value.phase) return;
      for (const lab of this.labs.labsOfEnv(name)) {
        this.labQueue.add(lab);
        this.rolloutQueue.add(lab);
      }
    });
    // a spec gone (its status may stay a while) can free a rollout's next step too
    c.specs.onChange((name, cur) => {
      if (!cur) for (const lab of this.labs.labsOfEnv(name)) this.rolloutQueue.add(lab);
    });
    this.labInformer.onChange((name) => {
      this.labQueue.add(name);
      this.rolloutQueue.add(name);
    });
    this.opInformer.onChange((id, cur) => {
      if (cur) this.opQueue.add(id);
    });
    c.alive.onChange((name) => this.nodeQueue.add(name));
    c.nodes.onChange((name) => this.nodeQueue.add(name));
    c.inventory.onChange((name) => this.nodeQueue.add(name));
    this.expiry.start();
    await c.start();
    await this.labInformer.start();
    await this.opInformer.start();
    for (const id of this.opInformer.names()) this.opQueue.add(id);
    for (const lab of this.labInformer.names()) this.rolloutQueue.add(lab);
    this.expiry.arm();
    for (const name of c.nodes.names()) this.nodeQueue.add(name);
    for (const name of new Set([...c.specs.names(), ...c.status.names()])) this.envQueue.add(name);
    const log = this.ctx.log;
    this.running = Promise.all([
      this.envQueue.run(
        (k) => this.envs.reconcile(k),
        (key, err, retry) => {
          reconcileFailed("env", retry);
          log.warn({ env: key, err: (err as Error).message, retryInMs: retry }, "env reconcile failed");
        },
      ),
      this.nodeQueue.run(
        (k) => this.nodes.reconcile(k),
        (key, err, retry) => {
          reconcileFailed("node", retry);
          log.warn({ node: key, err: (err as Error).message, retryInMs: retry }, "node reconcile failed");
        },
      ),
      this.labQueue.run(
        (k) => this.labs.reconcile(k),
        (key, err, retry) => {
          reconcileFailed("lab", retry);
          log.warn({ lab: key, err: (err as Error).message, retryInMs: retry }, "lab reconcile failed");
        },
      ),
      this.rolloutQueue.run(
        (k) => this.rollouts.reconcile(k),
        (key, err, retry) => {
          reconcileFailed("lab", retry);
          log.warn({ lab: key, err: (err as Error).message, retryInMs: retry }, "lab rollout failed");
        },
      ),
    ]);
    // Not awaited by stop(): a pass may be a push of minutes; once deposed its status writes are
    // fenced off, and the next leader's pass takes the record over.
    void this.opQueue.run(
      (k) => this.operations.reconcile(k),
      (key, err, retry) =>
        log.warn({ operation: key, err: (err as Error).message, retryInMs: retry }, "operation pass failed"),
    );
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
    this.labQueue.shutdown();
    this.rolloutQueue.shutdown();
    this.opQueue.shutdown();
    await this.expiry.stop();
    await this.labInformer.stop();
    await this.opInformer.stop();
    await this.cache.stop();
    await this.running;
  }
}
