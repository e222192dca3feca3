/**
 * What `lab up` shows after its record is written: it follows the record's
 * rollout (moved by the leader's lab loop, reconcile/lab-rollout.ts) and the
 * envs' statuses, printing the lines the handler printed when it did the
 * work itself. Any replica can follow; nothing here changes the lab.
 */
import { Code, ProtoctlError } from "../../common/errors.js";
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { LabPlan } from "../labs/index.js";
import { emptyRollout } from "../labs/rollout.js";
import type { ClusterStore } from "../store/store.js";
import type { EnvStatusWaiter } from "./env-watch.js";

const SETTLED = new Set([EnvPhase.ENV_PHASE_RUNNING, EnvPhase.ENV_PHASE_FAILED, EnvPhase.ENV_PHASE_LOST]);
const POLL_MS = 50;

export type Progress = (machine: string, action: string, message?: string, phase?: EnvPhase) => void;

export interface FollowInput {
  store: ClusterStore;
  waiter: EnvStatusWaiter;
  lab: string;
  plan: LabPlan;
  /** Also wait for new and replaced machines to run (or fail). */
  wait: boolean;
  stop: Promise<never>;
  progress: Progress;
  timeoutMs: number;
}

/** Follows a written rollout to its end; resolves with the machines that did not start ("name: why"). */
export async function followRollout(f: FollowInput): Promise<string[]> {
  const { store, plan, lab, progress } = f;
  const deadline = Date.now() + f.timeoutMs;
  const deletes = new Map(plan.machines.delete.map((m) => [m.name, m.envName]));
  const hosts = new Map(plan.hostsUpdates.map((u) => [u.name, plan.state.machines[u.name]!.hostsDigest]));
  for (const u of plan.hostsUpdates) {
    const st = (await store.envStatus.get(u.envName))?.value;
    if (st?.phase !== EnvPhase.ENV_PHASE_RUNNING) {
      // the leader rewrites it when it runs again
      progress(u.name, "hosts", "cannot update /etc/hosts: not running");
      hosts.delete(u.name);
    }
  }
  const coming = [...plan.machines.create, ...plan.machines.replace];
  const failed: string[] = [];
  const notCreated = new Set<string>();
  for (;;) {
    const v = await store.labStates.get(lab);
    if (!v || v.value.deleting) {
      throw new ProtoctlError(Code.ABORTED, `lab ${lab} is being deleted`, {
        reason: "LAB_DELETING",
        subject: `lab/${lab}`,
      });
    }
    const r = v.value.rollout ?? emptyRollout();
    for (const [m, env] of deletes) {
      if (r.remove.includes(env)) continue;
      progress(m, "delete", "deleted");
      deletes.delete(m);
    }
    for (const [m, digest] of hosts) {
      const err = r.hostsErrors[m];
      if (r.hostsApplied[m] === digest) progress(m, "hosts", "/etc/hosts updated");
      else if (err?.digest === digest) progress(m, "hosts", `cannot update /etc/hosts: ${err.message}`);
      // a later apply wants other entries: its own caller follows them
      else if (v.value.state.machines[m]?.hostsDigest === digest) continue;
      hosts.delete(m);
    }
    for (const m of coming) {
      const err = r.createErrors[m.name];
      if (err && !notCreated.has(m.name)) {
        notCreated.add(m.name);
        failed.push(`${m.name}: ${err}`);
      }
    }
    const writing = coming.some((m) => r.create.includes(m.envName) || r.replace.includes(m.envName));
    if (deletes.size === 0 && hosts.size === 0 && !writing) break;
    if (Date.now() > deadline) {
      throw new ProtoctlError(Code.DEADLINE_EXCEEDED, `lab ${lab} is still being applied`, {
        reason: "LAB_APPLY_SLOW",
        subject: `lab/${lab}`,
        hint: "see `protoctl lab describe` and `protoctl events`; the controller carries on",
      });
    }
    await Promise.race([new Promise((res) => setTimeout(res, POLL_MS)), f.stop]);
  }
  if (!f.wait) return failed;
  await Promise.all(
    coming
      .filter((m) => !notCreated.has(m.name))
      .map(async (m) => {
        const left = Math.max(1, deadline - Date.now());
        const st = await f.waiter.wait(m.envName, (s) => !s || SETTLED.has(s.phase), left, f.stop);
        const phase = st?.phase ?? EnvPhase.ENV_PHASE_UNSPECIFIED;
        if (phase !== EnvPhase.ENV_PHASE_RUNNING) failed.push(`${m.name}: ${st?.message || "gone"}`);
        progress(
          m.name,
          plan.machines.replace.includes(m) ? "replace" : "create",
          st?.node ? `on ${st.node}` : "",
          phase,
        );
      }),
  );
  return failed;
}
