/**
 * The operations loop (leader only): moves each `operations/<id>` record
 * forward. A record not finished gets a pass: the push or deletion it asks
 * for, run from what the store and the nodes say now (a record a dead leader
 * left half done is just another record). A pass that cannot start yet
 * (nodes not Ready after a leader change) is retried with the queue's
 * backoff; finished records are deleted after KEEP_FINISHED_MS.
 */
import { ProtoctlError } from "../../common/errors.js";
import type { ControllerContext } from "../context.js";
import { baseDeletePass, encodeDeleted } from "../operations/base-delete-pass.js";
import { envMovePass } from "../operations/env-move-pass.js";
import { toStoredError } from "../operations/follow.js";
import { PUSH_RETRY_WINDOW_MS, pushPass } from "../operations/push-pass.js";
import { ensureLocal } from "../operations/push-requests.js";
import { isFinished, KEEP_FINISHED_MS, type OperationRecord } from "../operations/record.js";
import { StatusWriter } from "../operations/status-writer.js";
import { Propagator } from "../propagation/push.js";
import type { Condition } from "../store/kv.js";
import type { ReconcileResult } from "./queue.js";

export class OperationReconciler {
  /** The leader's one push executor (its in-memory joins hold for this term only). */
  readonly propagator: Propagator;
  /** Records with a pass running here: a change to them (our own status writes) starts no second pass. */
  private readonly running = new Set<string>();

  constructor(
    private readonly ctx: ControllerContext,
    private readonly fence: () => Condition[],
  ) {
    this.propagator = new Propagator(ctx, (base, version, node) =>
      ensureLocal(ctx.store, node, base, version),
    );
  }

  async reconcile(id: string): Promise<ReconcileResult> {
    if (this.running.has(id)) return;
    const cur = await this.ctx.store.operations.get(id);
    if (!cur) return;
    const rec = cur.value;
    if (isFinished(rec.status)) {
      const age = Date.now() - (rec.status.finishedMs ?? rec.status.updatedMs);
      if (age < KEEP_FINISHED_MS) return { requeueAfterMs: KEEP_FINISHED_MS - age + 100 };
      await this.ctx.store.kv.commit({
        conditions: [{ key: cur.key, modRevision: cur.modRevision }, ...this.fence()],
        writes: [{ op: "delete", key: cur.key }],
      });
      return;
    }
    this.running.add(id);
    try {
      return await this.pass(id, rec);
    } finally {
      this.running.delete(id);
    }
  }

  private async pass(id: string, rec: OperationRecord): Promise<ReconcileResult> {
    const w = new StatusWriter(this.ctx.store, id, rec, this.fence);
    w.update((s) => {
      s.phase = "running";
      s.controller = this.ctx.id;
      s.passes++;
    });
    const spec = rec.spec;
    if (spec.kind === "push") {
      const out = await pushPass(this.propagator, spec.push, w);
      if (out) throw out.retry;
      return;
    }
    try {
      if (spec.kind === "env-move") {
        await envMovePass(this.ctx, spec.envMove, this.fence);
        w.update((s) => {
          s.phase = "succeeded";
          s.finishedMs = Date.now();
        });
        await w.flush();
        return;
      }
      const deleted = await baseDeletePass(this.ctx, this.propagator.seeds, spec.baseDelete);
      w.update((s) => {
        s.phase = "succeeded";
        s.result = encodeDeleted(deleted);
        s.finishedMs = Date.now();
      });
    } catch (err) {
      const pe = ProtoctlError.from(err);
      // retried by the queue with backoff; terminal codes end the record
      if (pe.retryable && Date.now() - rec.createdMs < PUSH_RETRY_WINDOW_MS) {
        await w.flush();
        throw pe;
      }
      w.update((s) => {
        s.phase = "failed";
        s.error = toStoredError(pe);
        s.finishedMs = Date.now();
      });
    }
    await w.flush();
    return;
  }
}
