/**
 * The work in flight during a fault: a burst of env creates (recorded, not
 * waited for, a bounded number of calls at a time), and the polls the cases
 * use to see where the envs are.
 */

import type { ControlServiceClient } from "../../proto/gen/protoctl/v1/control.js";
import { type Env, EnvPhase, RestartPolicy } from "../../proto/gen/protoctl/v1/types.js";
import { call, testEnvSpec } from "../support/controller/cluster.js";

export const BURST = 100;

export function names(prefix: string, n = BURST): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
}

/**
 * CreateEnv (no wait) for every name, `parallel` calls at a time, through
 * `via()` (asked again per call, so a case can switch controllers). Resolves
 * with the failed calls' errors (by name); the burst goes on after a failure.
 */
export async function burst(
  via: () => ControlServiceClient,
  envs: string[],
  restart: (name: string) => RestartPolicy = () => RestartPolicy.RESTART_POLICY_NEVER,
  parallel = 16,
): Promise<Map<string, Error>> {
  const failed = new Map<string, Error>();
  const queue = [...envs];
  const worker = async () => {
    for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
      const spec = testEnvSpec(n, { base: { name: "busybox", version: 0 }, restart: restart(n) });
      await call(via(), "createEnv", { spec, wait: false }, 30_000).catch((e: Error) => failed.set(n, e));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return failed;
}

/** Every env the controller lists, by name. */
export async function listEnvs(c: ControlServiceClient): Promise<Map<string, Env>> {
  const r = await call(c, "listEnvs", { node: "", group: "" }, 10_000);
  return new Map(r.envs.map((e) => [e.spec?.name ?? "", e]));
}

export function phaseOf(e: Env | undefined): EnvPhase {
  return e?.status?.phase ?? EnvPhase.ENV_PHASE_UNSPECIFIED;
}

export function countRunning(all: Map<string, Env>, envs: string[]): number {
  return envs.filter((n) => phaseOf(all.get(n)) === EnvPhase.ENV_PHASE_RUNNING).length;
}

/** Polls until `done(all envs)` holds; rejects after `ms` with what `describe` says about the last state. */
export async function until(
  c: () => ControlServiceClient,
  done: (all: Map<string, Env>) => boolean,
  ms: number,
  describe: (all: Map<string, Env>) => string = () => "",
): Promise<Map<string, Env>> {
  const deadline = Date.now() + ms;
  let last = new Map<string, Env>();
  for (;;) {
    try {
      last = await listEnvs(c());
      if (done(last)) return last;
    } catch {
      // a controller or etcd may be down mid-case: ask again
    }
    if (Date.now() > deadline) throw new Error(`not converged within ${ms} ms: ${describe(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Phases of the given envs, counted: "RUNNING×98 PENDING×2". */
export function phaseSummary(all: Map<string, Env>, envs: string[]): string {
  const counts = new Map<string, number>();
  for (const n of envs) {
    const p = EnvPhase[phaseOf(all.get(n))].replace("ENV_PHASE_", "");
    counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  // why some did not make it: the distinct messages of the ones not Running
  const why = new Set(
    envs
      .map((n) => all.get(n))
      .filter((e) => phaseOf(e) !== EnvPhase.ENV_PHASE_RUNNING && e?.status?.message)
      .map((e) => `${e?.spec?.name}: ${e?.status?.message}`.slice(0, 300)),
  );
  const summary = [...counts].map(([p, k]) => `${p}×${k}`).join(" ");
  return why.size ? `${summary} (${[...why].slice(0, 3).join("; ")})` : summary;
}

/** node → env names, from the env statuses (where the controller believes each runs). */
export function placementInStore(all: Map<string, Env>, envs: string[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const n of envs) {
    const e = all.get(n);
    if (phaseOf(e) !== EnvPhase.ENV_PHASE_RUNNING) continue;
    const node = e?.status?.node ?? "";
    out.set(node, (out.get(node) ?? new Set()).add(n));
  }
  return out;
}

/** Deletes the envs (all at once, no wait) and waits until the controller lists none of them. */
export async function deleteAll(c: () => ControlServiceClient, envs: string[]): Promise<void> {
  const queue = [...envs];
  const worker = async () => {
    for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
      await call(c(), "deleteEnv", { name: n, wait: false }, 30_000).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const set = new Set(envs);
  await until(
    c,
    (all) => ![...all.keys()].some((n) => set.has(n)),
    120_000,
    (all) =>
      phaseSummary(
        all,
        envs.filter((n) => all.has(n)),
      ),
  );
}
