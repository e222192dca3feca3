/**
 * Following an operation record from any replica: the API handler that wrote
 * it (or the leader's own scheduler hook) sees every status the leader
 * writes, in order, until it says it has seen enough. The watch starts at the
 * revision of the first read, so no write between the two is missed.
 */
import { Code, ProtoctlError } from "../../common/errors.js";
import type { ClusterStore } from "../store/store.js";
import type { OperationRecord, StoredError } from "./record.js";

/**
 * Calls `on` with the record now and after each change; resolves with the
 * record `on` returned true for. A record deleted meanwhile is NOT_FOUND.
 */
export async function followOperation(
  store: ClusterStore,
  id: string,
  on: (rec: OperationRecord) => boolean | Promise<boolean>,
): Promise<OperationRecord> {
  const col = store.operations;
  const first = await col.get(id);
  if (!first) throw gone(id);
  if (await on(first.value)) return first.value;
  return new Promise<OperationRecord>((resolve, reject) => {
    let cancel: (() => Promise<void>) | undefined;
    let settled = false;
    let lastRev = first.modRevision;
    // Callbacks may be async (a stream write): run them one at a time, in revision order.
    let chain = Promise.resolve();
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      void cancel?.().catch(() => undefined);
      fn();
    };
    col
      .watch(
        first.modRevision + 1,
        (events) => {
          for (const e of events) {
            if (col.nameOf(e.key) !== id || e.modRevision <= lastRev) continue;
            lastRev = e.modRevision;
            if (e.type === "delete") {
              chain = chain.then(() => finish(() => reject(gone(id))));
              continue;
            }
            let rec: OperationRecord;
            try {
              rec = col.codec.decode(e.value!);
            } catch {
              continue;
            }
            chain = chain
              .then(async () => {
                if (!settled && (await on(rec))) finish(() => resolve(rec));
              })
              .catch((err: unknown) => finish(() => reject(err)));
          }
        },
        (err) => finish(() => reject(ProtoctlError.from(err))),
      )
      .then(
        (c) => {
          cancel = c;
          if (settled) void c().catch(() => undefined);
        },
        (err: unknown) => finish(() => reject(ProtoctlError.from(err))),
      );
  });
}

function gone(id: string): ProtoctlError {
  return new ProtoctlError(Code.NOT_FOUND, `operation ${id} is gone`, {
    reason: "OPERATION_NOT_FOUND",
    subject: `operation/${id}`,
  });
}

export function toStoredError(err: unknown): StoredError {
  const pe = ProtoctlError.from(err);
  return { code: pe.code, message: pe.message, reason: pe.reason, hint: pe.hint, subject: pe.subject };
}

export function fromStoredError(e: StoredError): ProtoctlError {
  return new ProtoctlError(e.code, e.message, { reason: e.reason, hint: e.hint, subject: e.subject });
}
