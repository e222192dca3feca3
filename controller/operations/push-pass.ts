/**
 * One leader's pass over a push record: runs the push to the record's
 * targets until every one is local (the record's goal, whatever the asker
 * waits for), writing each progress line and per-target outcome into the
 * status. Level-based: a pass after a leader change reads the same spec and
 * the world (inventory, attachments) and goes on from there: targets already
 * local are reported local, attached ones are re-attached from a live
 * source and hydrated.
 */
import { ProtoctlError } from "../../common/errors.js";
import { AttachmentPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { Propagator } from "../propagation/push.js";
import { toStoredError } from "./follow.js";
import type { PushNodeStatus, PushSpec } from "./record.js";
import type { StatusWriter } from "./status-writer.js";

/**
 * How long a pass that failed before any target started is retried: a new
 * leader sees nodes NotReady until their heartbeats find a replica again.
 */
export const PUSH_RETRY_WINDOW_MS = 60_000;

export type PassOutcome = { retry: ProtoctlError } | undefined;

const blank = (): PushNodeStatus => ({
  phase: AttachmentPhase.ATTACHMENT_PHASE_UNSPECIFIED,
  fraction: 0,
  sourceNode: "",
  message: "",
  usable: false,
});

export async function pushPass(
  propagator: Propagator,
  spec: PushSpec,
  w: StatusWriter,
): Promise<PassOutcome> {
  const since = w.status.progressMs;
  let reported = false;
  const node = (s: { nodes: Record<string, PushNodeStatus> }, n: string) => {
    s.nodes[n] ??= blank();
    return s.nodes[n]!;
  };
  try {
    await propagator.push(
      {
        ref: { name: spec.base, version: spec.version },
        nodes: spec.targets,
        all: false,
        selector: {},
        fanout: spec.fanout,
        transport: spec.transport,
        waitLocal: true,
      },
      (p) => {
        if (p.done) {
          reported = true;
          return;
        }
        const { node: n, phase, fraction, sourceNode, message } = p;
        w.line({ node: n, phase, fraction, sourceNode, message });
        // A line about the whole push (its seed) names no target.
        if (!n) return;
        w.update((s) => {
          s.progressMs = Date.now();
          const ns = node(s, n);
          Object.assign(ns, { phase, fraction, sourceNode, message });
          if (phase === AttachmentPhase.ATTACHMENT_PHASE_LOCAL) {
            ns.usable = true;
            ns.error = undefined;
          } else if (phase === AttachmentPhase.ATTACHMENT_PHASE_ATTACHED) ns.usable = true;
        });
      },
      {
        usable: (n) =>
          w.update((s) => {
            const ns = node(s, n);
            if (!ns.error) ns.usable = true;
          }),
        seed: (wait) =>
          w.update((s) => {
            s.seed = wait;
            s.progressMs = Date.now();
          }),
        failed: (n, err) =>
          w.update((s) => {
            const ns = node(s, n);
            ns.usable = false;
            ns.error = toStoredError(err);
          }),
      },
    );
    w.update((s) => {
      s.phase = "succeeded";
      s.finishedMs = Date.now();
    });
  } catch (err) {
    const pe = ProtoctlError.from(err);
    // Before any target started, a failure that may pass (nodes not Ready yet after a leader
    // change, the store) is retried; once targets ran, their outcome is the push's.
    if (!reported && pe.retryable && Date.now() - since < PUSH_RETRY_WINDOW_MS) {
      await w.flush();
      return { retry: pe };
    }
    w.update((s) => {
      s.phase = "failed";
      s.error = toStoredError(pe);
      s.finishedMs = Date.now();
    });
  }
  await w.flush();
  return undefined;
}
