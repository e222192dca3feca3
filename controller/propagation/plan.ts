/**
 * The push planner: pure decisions over what the controller knows of the
 * nodes (no I/O, unit-tested with a plan harness like controller/scheduler/):
 * which nodes a push targets, which node is the origin, what each target
 * still needs, the transport per target (seed or delta), and the one error a
 * push ends with. The executor (push.ts) carries the plan out.
 */
import { Code, failedPrecondition, ProtoctlError, unavailable } from "../../common/errors.js";
import { noSuchObject, validateName } from "../../common/names.js";
import { type BaseVersion, BaseVersionState } from "../../proto/gen/protoctl/v1/types.js";

export const DEFAULT_FANOUT = 2;
/** NBD connections one peer may hold on a source: nbdfuse -C 4 plus nbdcopy --connections=4. */
export const CONNECTIONS_PER_PEER = 8;

/** What a push knows of one node for one base. */
export interface NodeHold {
  /** Checksum of the seed image a hydrated node holds, per version. */
  imageSum: Map<number, string>;
  ready: boolean;
  labels: Record<string, string>;
  versions: Map<number, BaseVersionState>;
}

export type Holdings = Map<string, NodeHold>;

/** The nodes a push goes to: those named (each must be Ready), else the Ready ones matching the selector. */
export function resolveTargets(holds: Holdings, nodes: string[], selector: Record<string, string>): string[] {
  if (nodes.length > 0) {
    for (const n of nodes) validateName("node", n);
    const unknown = nodes.filter((n) => !holds.has(n));
    if (unknown.length) {
      throw noSuchObject("node", unknown.join(", "), unknown[0]);
    }
    const missing = nodes.filter((n) => !holds.get(n)?.ready);
    if (missing.length) {
      throw unavailable(`node(s) not Ready: ${missing.join(", ")}`, {
        reason: "NODE_NOT_READY",
        hint: "see `protoctl node ls`",
      });
    }
    return [...new Set(nodes)];
  }
  const sel = Object.entries(selector);
  const targets = [...holds.entries()]
    .filter(([, h]) => h.ready && sel.every(([k, v]) => h.labels[k] === v))
    .map(([n]) => n);
  if (targets.length === 0 && sel.length > 0) {
    const want = sel.map(([k, v]) => `${k}=${v}`).join(",");
    throw failedPrecondition(`no ready node matches ${want}`, {
      reason: "NO_TARGETS",
      hint: "see the labels in `protoctl node ls -o wide`",
    });
  }
  return targets;
}

/**
 * The origin: the seal's origin (any node when the seal names none) holding
 * the version as a local subvolume, else a node hydrated from the image the
 * seal (or the seed record) names. NO_ORIGIN is UNAVAILABLE while a node
 * holding it is only not Ready (a leader change: heartbeats come back),
 * FAILED_PRECONDITION when no node holds it at all.
 */
export function chooseOrigin(
  holds: Holdings,
  ref: string,
  version: number,
  seal: BaseVersion,
  seedSum: string | undefined,
): string {
  const local = (h: NodeHold) => h.versions.get(version) === BaseVersionState.BASE_VERSION_STATE_LOCAL;
  const sum = seal.checksum || seedSum;
  const candidates = [...holds.entries()].filter(
    ([n, h]) =>
      ((!seal.origin || n === seal.origin) && local(h)) || (!!sum && h.imageSum.get(version) === sum),
  );
  // the origin's own copy first, then hydrated copies of its image
  candidates.sort(([, a], [, b]) => Number(local(b)) - Number(local(a)));
  const ready = candidates.find(([, h]) => h.ready);
  if (ready) return ready[0];
  const fields = {
    reason: "NO_ORIGIN",
    subject: `base/${ref}`,
    hint: "import, build or update the base on a node first",
  };
  if (candidates.length > 0) {
    throw unavailable(`no Ready node holds ${ref} (${candidates.map(([n]) => n).join(", ")} not Ready)`, {
      ...fields,
      hint: "push again once the node is Ready",
    });
  }
  throw failedPrecondition(`no ready node holds ${ref} as a local version`, fields);
}

/** Targets that still need work, and those reported as they are (already attached or local). */
export interface TargetSplit {
  todo: string[];
  attached: string[];
  local: string[];
}

export function splitTargets(
  holds: Holdings,
  targets: string[],
  version: number,
  waitLocal: boolean,
): TargetSplit {
  const out: TargetSplit = { todo: [], attached: [], local: [] };
  for (const t of targets) {
    const st = holds.get(t)?.versions.get(version);
    if (st === undefined) out.todo.push(t);
    else if (st === BaseVersionState.BASE_VERSION_STATE_ATTACHED)
      (waitLocal ? out.todo : out.attached).push(t);
    else out.local.push(t);
  }
  return out;
}

/** NBD clients an export admits: every target may read lazily from one source at once, some copying too. */
export function maxClients(lazyK: number, fanout: number, todo: number): number {
  return CONNECTIONS_PER_PEER * Math.min(lazyK + fanout, Math.max(1, todo)) + 8;
}

/** How a target gets base@N. */
export interface TransportChoice {
  /** The target holds @N-1 only attached: make it local first (the delta needs the whole parent). */
  parentFirst: boolean;
  /** Try `btrfs send` from the origin (seed instead when its parent turns out of another lineage). */
  delta: boolean;
  /** The delta's parent (0: a full send). */
  parentVersion: number;
}

/**
 * Delta when asked for ("delta"), or unasked ("") when both the target and
 * the origin hold @N-1 in their pools. A target holding @N-1 as a hydrated
 * seed takes the delta only when asked for (it first copies @N-1 into its
 * pool: a whole local copy before @N is usable); one holding it only
 * attached (or attached by a push the controller knows of,
 * `parentAttachedHere`) hydrates it first.
 */
export function chooseTransport(
  transport: string,
  version: number,
  target: Map<number, BaseVersionState> | undefined,
  origin: Map<number, BaseVersionState> | undefined,
  parentAttachedHere: boolean,
): TransportChoice {
  const {
    BASE_VERSION_STATE_LOCAL: LOCAL,
    BASE_VERSION_STATE_HYDRATED: HYDRATED,
    BASE_VERSION_STATE_ATTACHED: ATTACHED,
  } = BaseVersionState;
  const parentIs = (v: Map<number, BaseVersionState> | undefined, ...states: BaseVersionState[]) =>
    states.includes(v?.get(version - 1) ?? BaseVersionState.BASE_VERSION_STATE_UNSPECIFIED);
  const parentFirst =
    transport === "delta" &&
    parentIs(origin, LOCAL) &&
    !parentIs(target, LOCAL, HYDRATED) &&
    (parentIs(target, ATTACHED) || parentAttachedHere);
  const withParent = parentIs(origin, LOCAL) && (parentFirst || parentIs(target, LOCAL, HYDRATED));
  const delta =
    transport === "delta" || (transport === "" && parentIs(target, LOCAL) && parentIs(origin, LOCAL));
  return { parentFirst, delta, parentVersion: withParent ? version - 1 : 0 };
}

/** The one error of a push with failed targets: their common code when they agree, else ABORTED. */
export function pushError(ref: string, failures: Array<{ node: string; err: ProtoctlError }>): ProtoctlError {
  const codes = new Set(failures.map((f) => f.err.code));
  const code = codes.size === 1 ? failures[0]!.err.code : Code.ABORTED;
  return new ProtoctlError(
    code,
    `push of ${ref} failed on ${failures.map((f) => `${f.node} (${f.err.message})`).join("; ")}`,
    { reason: failures[0]!.err.reason || "PUSH_FAILED", subject: `base/${ref}` },
  );
}
