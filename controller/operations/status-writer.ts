/**
 * The leader's writes of one operation's status: changes are applied to a
 * copy in memory and written coalesced (one write in flight, the latest copy
 * next), each conditioned on the leader's fence so a deposed leader writes
 * nothing. Followers see every progress line, as lines are kept in the record.
 */
import type { Condition } from "../store/kv.js";
import type { ClusterStore } from "../store/store.js";
import { MAX_LINES, type OperationRecord, type OperationStatus, type ProgressLine } from "./record.js";

export class StatusWriter {
  private dirty = false;
  private flushing: Promise<void> | undefined;
  private failed: unknown;

  constructor(
    private readonly store: ClusterStore,
    readonly id: string,
    private readonly rec: OperationRecord,
    private readonly fence: () => Condition[],
  ) {}

  get status(): OperationStatus {
    return this.rec.status;
  }

  /** Applies a change and schedules a write. */
  update(fn: (s: OperationStatus) => void): void {
    fn(this.rec.status);
    this.rec.status.updatedMs = Date.now();
    this.dirty = true;
    this.flushing ??= this.drain();
  }

  line(l: Omit<ProgressLine, "seq">): void {
    this.update((s) => {
      const seq = (s.lines.at(-1)?.seq ?? 0) + 1;
      s.lines.push({ seq, ...l });
      if (s.lines.length > MAX_LINES) s.lines.splice(0, s.lines.length - MAX_LINES);
    });
  }

  /** Resolves when everything applied so far is written; throws when a write failed (lost the lead). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.failed) throw this.failed;
  }

  private async drain(): Promise<void> {
    try {
      while (this.dirty) {
        this.dirty = false;
        const key = this.store.keys.operation(this.id);
        const r = await this.store.kv.commit({
          conditions: [...this.fence()],
          writes: [{ op: "put", key, value: this.store.operations.codec.encode(this.rec) }],
        });
        if (!r.succeeded) throw new Error(`not the leader any more: status of ${this.id} not written`);
      }
    } catch (err) {
      this.failed = err;
    } finally {
      this.flushing = undefined;
    }
  }
}
