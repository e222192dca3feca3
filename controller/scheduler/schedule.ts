/**
 * Placement as a pure function (after Nomad's scheduler): filters reject
 * nodes with a reason each, then the survivors are scored and the best wins.
 * No I/O, no clock, no randomness: the same view and request give the same
 * plan, which is what the tests and `env describe` rely on.
 */

import { baseRefOf } from "../../common/base-ref.js";
import type { ClusterView, NodeScore, NodeView, Plan, Rejection, ScheduleRequest } from "./view.js";

/** Weights of the score parts; exported for tests and tuning. */
export const WEIGHTS = {
  /** Holding the base version beats any load difference: no propagation needed. */
  baseLocal: 10,
  /** Spread or binpack, in [0, 1]. */
  fit: 5,
  /**
   * Per env of the same group already on the node. More than holding the base and any load
   * difference together: a lab spreads over nodes even where that means pushing its base there
   * (scheduler.propagation), which is what a multi-host lab is for.
   */
  antiAffinity: 16,
};

interface FilterContext {
  /** "base@N" of the request. */
  ref: string;
  selector: [string, string][];
  /** Some ready node holds the version (it could be propagated from there); asked only of nodes that lack it. */
  heldSomewhere(): boolean;
  propagation: boolean;
}

/** How many of the best-scored nodes a plan lists (the explanation; the winner is the first). */
export const SCORES_SHOWN = 10;

/**
 * Why a node cannot take the env (the first filter that refuses it, in this
 * order), or undefined. One function rather than a list of filter closures:
 * it runs for every node on every placement, and the closures' calls (ten
 * per node, one call site) were most of the scheduler's time.
 */
function rejection(n: NodeView, r: ScheduleRequest, ctx: FilterContext): string | undefined {
  if (r.node && n.name !== r.node) return `env is pinned to node ${r.node}`;
  if (r.exclude?.includes(n.name)) return "excluded for this env (it was lost there)";
  // own keys only: a node may be named "constructor"
  if (r.avoid && Object.hasOwn(r.avoid, n.name) && r.avoid[n.name]) return r.avoid[n.name];
  if (!n.ready) return "node is NotReady";
  if (n.cordoned) return "node is cordoned";
  if (n.draining) return "node is draining";
  for (const [k, v] of ctx.selector) {
    const has = Object.hasOwn(n.labels, k);
    if (!has || n.labels[k] !== v)
      return `label ${k}=${v} not matched (${k}=${has ? n.labels[k] : "<unset>"})`;
  }
  if (r.memoryBytes > 0 && n.capacity.memoryBytes > 0) {
    const free = n.capacity.memoryBytes - n.allocated.memoryBytes;
    if (r.memoryBytes > free)
      return `insufficient memory: wants ${fmt(r.memoryBytes)}, ${fmt(Math.max(0, free))} unallocated of ${fmt(n.capacity.memoryBytes)}`;
  }
  if (r.diskBytes > 0) {
    const unallocated = n.capacity.poolSizeBytes - n.allocated.diskBytes;
    const free = Math.min(unallocated, n.capacity.poolFreeBytes);
    if (r.diskBytes > free)
      return `insufficient pool space: wants ${fmt(r.diskBytes)}, ${fmt(Math.max(0, free))} available`;
  }
  const ref = ctx.ref;
  if (n.baseVersions.has(ref)) return undefined;
  if (!ctx.heldSomewhere()) return `base ${ref} is not held by any ready node`;
  if (!ctx.propagation) return `base ${ref} is not on this node (propagation is not enabled)`;
  return undefined;
}

export function schedule(view: ClusterView, req: ScheduleRequest): Plan {
  const ref = baseRefOf(req);
  let held: boolean | undefined;
  const ctx: FilterContext = {
    ref,
    selector: Object.entries(req.nodeSelector ?? {}),
    // a pass over every node, needed only when some node lacks the version
    heldSomewhere: () => {
      held ??= view.nodes.some((n) => n.ready && n.baseVersions.has(ref));
      return held;
    },
    propagation: view.propagation,
  };
  const rejections: Rejection[] = [];
  const feasible: NodeView[] = [];
  for (const n of view.nodes) {
    const reason = rejection(n, req, ctx);
    if (reason) rejections.push({ node: n.name, reason });
    else feasible.push(n);
  }
  if (req.node && !view.nodes.some((n) => n.name === req.node)) {
    rejections.push({ node: req.node, reason: "no such node" });
  }
  if (feasible.length === 0) return { rejections, scores: [] };

  let maxEnvs = 1;
  for (const n of feasible) maxEnvs = Math.max(maxEnvs, n.allocated.envs + 1);
  // The best SCORES_SHOWN by (score desc, name asc), kept sorted while scanning: one pass, no
  // sort of every node, and the score parts as objects only for the nodes shown.
  const values = new Float64Array(feasible.length);
  const top: number[] = [];
  const before = (a: number, b: number) =>
    values[a]! > values[b]! || (values[a] === values[b] && feasible[a]!.name < feasible[b]!.name);
  for (let i = 0; i < feasible.length; i++) {
    values[i] = score(feasible[i]!, req, ref, maxEnvs);
    if (top.length === SCORES_SHOWN && !before(i, top[top.length - 1]!)) continue;
    let at = top.length;
    while (at > 0 && before(i, top[at - 1]!)) at--;
    top.splice(at, 0, i);
    if (top.length > SCORES_SHOWN) top.pop();
  }
  const scores: NodeScore[] = top.map((i) => {
    const n = feasible[i]!;
    return { node: n.name, score: values[i]!, parts: parts(n, req, ref, maxEnvs) };
  });
  const chosen = feasible[top[0]!]!;
  return {
    node: chosen.name,
    needsPropagation: !chosen.baseVersions.has(ref),
    rejections,
    scores,
  };
}

/**
 * A node's score: the sum of its `parts`, computed without making the parts
 * object (one per feasible node per placement was most of what the
 * scheduler allocated); the same terms added in the same order, so the
 * same number.
 */
function score(n: NodeView, req: ScheduleRequest, ref: string, maxEnvs: number): number {
  const baseLocal = n.baseVersions.has(ref) ? 1 : 0;
  const same = req.group ? (n.groups.get(req.group) ?? 0) : 0;
  return baseLocal * WEIGHTS.baseLocal + fitOf(n, req, maxEnvs) * WEIGHTS.fit + -same * WEIGHTS.antiAffinity;
}

function parts(n: NodeView, req: ScheduleRequest, ref: string, maxEnvs: number) {
  const baseLocal = n.baseVersions.has(ref) ? 1 : 0;
  const same = req.group ? (n.groups.get(req.group) ?? 0) : 0;
  return {
    baseLocal: baseLocal * WEIGHTS.baseLocal,
    fit: fitOf(n, req, maxEnvs) * WEIGHTS.fit,
    antiAffinity: -same * WEIGHTS.antiAffinity,
  };
}

/** Spread or binpack fit in [0, 1], from memory use and env count after the placement. */
function fitOf(n: NodeView, req: ScheduleRequest, maxEnvs: number): number {
  const memUtil =
    n.capacity.memoryBytes > 0
      ? Math.min(1, (n.allocated.memoryBytes + req.memoryBytes) / n.capacity.memoryBytes)
      : 0;
  const envLoad = (n.allocated.envs + 1) / (maxEnvs + 1);
  const load = n.capacity.memoryBytes > 0 ? (memUtil + envLoad) / 2 : envLoad;
  return req.strategy === "binpack" ? load : 1 - load;
}

function fmt(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)}${units[i]}`;
}
