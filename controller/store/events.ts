/**
 * The cluster event stream: `events/<ms>-<writer>-<seq>` keys that expire.
 * Every event is bound to a lease granted per time bucket (one lease per
 * writer per bucket, not per event), so etcd drops old events by itself and
 * the lease count stays small. Lost events are acceptable (best effort),
 * so writes are unconditional and failures are logged, not thrown.
 */
import { Event } from "../../proto/gen/protoctl/v1/types.js";
import { protoJson } from "./codec.js";
import type { Keys } from "./keys.js";
import type { Kv, TxnBatcher, WatchEvent, Write } from "./kv.js";

export type EventInput = Omit<Event, "timeMs" | "revision" | "attributes" | "node"> & Partial<Event>;

const codec = protoJson(Event);

export class EventLog {
  private seq = 0;
  private bucket = -1;
  private leaseId: Promise<string> | undefined;

  private readonly kv: Kv;
  /** The writer as it appears in event keys (made once: it is in every event's key). */
  private readonly writerPart: string;

  /**
   * @param batcher commits a lone event (every API call's audit record) in a batch with other
   *   writes: a txn of its own per call was one etcd txn per env create.
   */
  constructor(
    private readonly batcher: TxnBatcher,
    private readonly keys: Keys,
    writer: string,
    private readonly ttlSeconds = 3600,
  ) {
    this.kv = batcher.kv;
    this.writerPart = sanitize(writer);
  }

  private lease(now: number): Promise<string> {
    const bucketMs = Math.max(1000, Math.floor((this.ttlSeconds * 1000) / 6));
    const b = Math.floor(now / bucketMs);
    if (b !== this.bucket || !this.leaseId) {
      this.bucket = b;
      const lease = this.kv.client.lease(this.ttlSeconds + Math.ceil(bucketMs / 1000), {
        autoKeepAlive: false,
      });
      this.leaseId = lease.grant().then((id) => {
        lease.release();
        return id;
      });
      this.leaseId.catch(() => {
        this.leaseId = undefined;
      });
    }
    return this.leaseId;
  }

  /** Records an event; resolves false when it could not be written. */
  async emit(e: EventInput): Promise<boolean> {
    try {
      await this.batcher.commit({ conditions: [], writes: [await this.write(e)] });
      return true;
    } catch {
      return false;
    }
  }

  /** The write that records an event, to put in a transaction with the change it reports. */
  async write(e: EventInput): Promise<Write> {
    const now = Date.now();
    const ev: Event = { timeMs: now, node: "", attributes: {}, revision: 0, ...e };
    const lease = await this.lease(now);
    const key = this.keys.event(now, this.writerPart, this.seq++);
    return { op: "put", key, value: codec.encode(ev), lease };
  }

  async list(sinceRevision = 0): Promise<{ events: Event[]; revision: number }> {
    const r = await this.kv.list(this.keys.folder("events"), codec);
    const events = r.items
      .filter((it) => it.modRevision > sinceRevision)
      .map((it) => ({ ...it.value, revision: it.modRevision }));
    return { events, revision: r.revision };
  }

  watch(fromRevision: number, cb: (events: Event[]) => void, onError?: (e: Error) => void) {
    return this.kv.watch(
      this.keys.folder("events"),
      fromRevision,
      (evs: WatchEvent[]) => {
        const out: Event[] = [];
        for (const w of evs) {
          if (w.type !== "put" || !w.value) continue;
          try {
            out.push({ ...codec.decode(w.value), revision: w.modRevision });
          } catch {
            // skip undecodable
          }
        }
        if (out.length) cb(out);
      },
      onError,
    );
  }
}

function sanitize(s: string): string {
  return s.replace(/[^a-zA-Z0-9_.-]/g, "_").slice(0, 40);
}
