/**
 * A lab's rollout: what `lab up` asked for that the world does not show yet,
 * kept in the lab record beside the desired state so the leader's lab loop
 * (reconcile/lab-rollout.ts) can finish it whoever took the call and whenever
 * a controller dies. Pure: `mergeRollout` (handler, at apply) and
 * `rolloutSteps` (leader, each pass) hold every decision; the callers do I/O.
 *
 * The env names listed are the only ones the loop deletes or creates: a
 * machine lost or removed by hand outside `lab up` is not brought back.
 */
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { LabState } from "./lab-state.js";
import type { LabPlan } from "./plan.js";

export interface HostsError {
  /** The desired digest the failed rewrite was for. */
  digest: string;
  message: string;
  /** Retrying will not help (until the hosts change again). */
  terminal: boolean;
}

export interface LabRollout {
  /** Envs of machines gone from the spec: deleted, dropped from here once gone. */
  remove: string[];
  /** Envs of changed or lost machines: deleted, then created again once gone. */
  replace: string[];
  /** Envs of new machines: created once every env listed above is gone. */
  create: string[];
  /** machine → digest of the /etc/hosts entries its running env holds (status). */
  hostsApplied: Record<string, string>;
  /** machine → the last failed rewrite of its /etc/hosts. */
  hostsErrors: Record<string, HostsError>;
  /** machine → why its env could not be created (name taken outside the lab). */
  createErrors: Record<string, string>;
}

export const emptyRollout = (): LabRollout => ({
  remove: [],
  replace: [],
  create: [],
  hostsApplied: {},
  hostsErrors: {},
  createErrors: {},
});

/**
 * The rollout to store with a plan's state: the plan's work added to what an
 * earlier apply left unfinished. An env still to be deleted that the new
 * spec wants again is replaced (deleted first), never kept as is.
 */
export function mergeRollout(
  prevState: LabState | undefined,
  prev: LabRollout | undefined,
  plan: LabPlan,
): LabRollout {
  const p = prev ?? emptyRollout();
  const wanted = new Set(Object.values(plan.state.machines).map((m) => m.envName));
  const mustGo = new Set([...p.remove, ...p.replace, ...plan.machines.replace.map((m) => m.envName)]);
  const toCreate = new Set([...p.create, ...plan.machines.create.map((m) => m.envName)]);
  const out = emptyRollout();
  for (const e of new Set([...mustGo, ...toCreate, ...plan.machines.delete.map((m) => m.envName)])) {
    if (!wanted.has(e)) out.remove.push(e);
    else if (mustGo.has(e)) out.replace.push(e);
    else out.create.push(e);
  }
  // kept machines hold what they held; a machine not yet created gets its table at creation
  for (const [m, ms] of Object.entries(plan.state.machines)) {
    const applied = p.hostsApplied[m] ?? prevState?.machines[m]?.hostsDigest;
    if (applied !== undefined && !out.create.includes(ms.envName) && !out.replace.includes(ms.envName)) {
      out.hostsApplied[m] = applied;
    }
  }
  for (const k of [out.remove, out.replace, out.create]) k.sort();
  return out;
}

/** What the loop sees of one env. */
export interface EnvView {
  spec: boolean;
  phase?: EnvPhase;
  node?: string;
}

export type RolloutStep =
  | { kind: "delete"; env: string }
  | { kind: "forget"; env: string }
  | { kind: "create"; env: string; machine: string }
  | { kind: "hosts"; env: string; machine: string; node: string; digest: string };

export interface RolloutDecision {
  steps: RolloutStep[];
  /** Nothing left to do or wait for. */
  converged: boolean;
}

/**
 * The next steps of a rollout, level-based: envs that must go are deleted
 * (and forgotten once gone); only when none of them is left are new and
 * replacement envs created; every running machine whose /etc/hosts lags the
 * desired digest is rewritten (unless that digest failed for good).
 */
export function rolloutSteps(
  state: LabState,
  r: LabRollout,
  envs: ReadonlyMap<string, EnvView>,
): RolloutDecision {
  const steps: RolloutStep[] = [];
  const exists = (e: string) => envs.has(e);
  let going = 0;
  for (const e of [...r.remove, ...r.replace]) {
    const v = envs.get(e);
    if (v?.spec) steps.push({ kind: "delete", env: e });
    if (v) going++;
    else if (r.remove.includes(e)) steps.push({ kind: "forget", env: e });
  }
  const machineOf = new Map(Object.entries(state.machines).map(([m, s]) => [s.envName, m]));
  if (going === 0) {
    for (const e of [...r.replace, ...r.create]) {
      const machine = machineOf.get(e);
      if (machine && !exists(e)) steps.push({ kind: "create", env: e, machine });
    }
  }
  const pending = new Set([...r.replace, ...r.create]);
  let lagging = 0;
  for (const [m, s] of Object.entries(state.machines)) {
    if (pending.has(s.envName) || r.hostsApplied[m] === s.hostsDigest) continue;
    const err = r.hostsErrors[m];
    if (err?.terminal && err.digest === s.hostsDigest) continue;
    const v = envs.get(s.envName);
    // a stopped machine is rewritten when it runs again (its status change wakes the loop)
    if (!v?.spec || v.phase !== EnvPhase.ENV_PHASE_RUNNING || !v.node) continue;
    lagging++;
    steps.push({ kind: "hosts", env: s.envName, machine: m, node: v.node, digest: s.hostsDigest });
  }
  const converged =
    r.remove.length + r.replace.length + r.create.length === 0 && lagging === 0 && steps.length === 0;
  return { steps, converged };
}

/** Whether the handler following a rollout has anything left to wait for. */
export function rolloutDone(r: LabRollout | undefined): boolean {
  return !r || r.remove.length + r.replace.length + r.create.length === 0;
}
