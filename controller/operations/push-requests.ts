/**
 * Asking for a push: write the record, then follow its status. The API
 * handler (any replica) streams the progress lines to its caller; the
 * scheduler's hook and a delta's parent (on the leader) wait for one node.
 * The push itself is the leader's (OperationReconciler), wherever the record
 * was written and whoever leads when it runs.
 */
import { unavailable } from "../../common/errors.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase } from "../../proto/gen/protoctl/v1/types.js";
import { pushError } from "../propagation/plan.js";
import type { ClusterStore } from "../store/store.js";
import { followOperation, fromStoredError } from "./follow.js";
import {
  isFinished,
  newOperationId,
  newRecord,
  type OperationRecord,
  type PushSpec,
  stableOperationId,
} from "./record.js";

/** Writes a new push record; returns its id. */
export async function createPush(store: ClusterStore, spec: PushSpec): Promise<string> {
  const id = newOperationId();
  await store.operations.create(id, newRecord({ kind: "push", push: spec }));
  return id;
}

/**
 * Streams a push record's progress lines to `send` until the push is done
 * for this caller: every target usable (or, with `waitLocal`, the record
 * finished). Throws the push's error when a target failed.
 */
export async function followPush(
  store: ClusterStore,
  id: string,
  waitLocal: boolean,
  send: (p: PushProgress) => void | Promise<void>,
): Promise<void> {
  let seq = 0;
  const rec = await followOperation(store, id, async (r) => {
    for (const l of r.status.lines) {
      if (l.seq <= seq) continue;
      seq = l.seq;
      await send({ ...l, done: false });
    }
    if (isFinished(r.status)) return true;
    if (waitLocal || r.spec.kind !== "push") return false;
    return r.spec.push.targets.every((t) => r.status.nodes[t]?.usable || r.status.nodes[t]?.error);
  });
  await send({
    node: "",
    phase: AttachmentPhase.ATTACHMENT_PHASE_UNSPECIFIED,
    fraction: 0,
    sourceNode: "",
    message: "",
    done: true,
  });
  const err = failure(rec);
  if (err) throw err;
}

function failure(rec: OperationRecord) {
  if (rec.status.phase === "failed" && rec.status.error) return fromStoredError(rec.status.error);
  if (rec.spec.kind !== "push") return undefined;
  const failed = Object.entries(rec.status.nodes).flatMap(([node, n]) =>
    n.error ? [{ node, err: fromStoredError(n.error) }] : [],
  );
  return failed.length ? pushError(`${rec.spec.push.base}@${rec.spec.push.version}`, failed) : undefined;
}

/**
 * The record of a push the controller asks for itself (stable id per asker,
 * base@N and node): an unfinished one is joined, a finished one replaced.
 */
async function ensureRecord(
  store: ClusterStore,
  asker: "scheduler" | "parent",
  spec: PushSpec,
): Promise<string> {
  const id = stableOperationId(asker, spec.base, String(spec.version), ...spec.targets);
  await store.operations.update(id, (cur) =>
    cur && !isFinished(cur.status) ? undefined : newRecord({ kind: "push", push: spec }),
  );
  return id;
}

const ownSpec = (asker: "scheduler" | "parent", base: string, version: number, node: string): PushSpec => ({
  base,
  version,
  targets: [node],
  fanout: 0,
  transport: "",
  asker,
});

/** Scheduler hook: base@N usable on `node` (attached now; the record goes on to local). */
export async function ensureUsable(
  store: ClusterStore,
  node: string,
  base: string,
  version: number,
): Promise<void> {
  const id = await ensureRecord(store, "scheduler", ownSpec("scheduler", base, version, node));
  const rec = await followOperation(
    store,
    id,
    (r) => isFinished(r.status) || !!r.status.nodes[node]?.usable || !!r.status.nodes[node]?.error,
  );
  const n = rec.status.nodes[node];
  if (n?.error) throw unavailable(`propagating ${base}@${version} to ${node} failed: ${n.error.message}`);
  // the push failed before reaching the node (no seed, no origin): its own error
  if (!n?.usable && rec.status.error) throw fromStoredError(rec.status.error);
}

/** A delta's parent: base@N local on `node`. */
export async function ensureLocal(
  store: ClusterStore,
  node: string,
  base: string,
  version: number,
): Promise<void> {
  const id = await ensureRecord(store, "parent", ownSpec("parent", base, version, node));
  const rec = await followOperation(store, id, (r) => isFinished(r.status));
  if (rec.status.phase === "failed") {
    throw rec.status.error
      ? fromStoredError(rec.status.error)
      : unavailable(`pushing ${base}@${version} failed`);
  }
}
