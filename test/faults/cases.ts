/**
 * The fault cases, shared by test/faults/faults.int.test.ts and
 * bench/faults: each injects one fault into the fault cluster while a burst
 * of env creates is in flight, waits for the cluster to converge, and
 * measures it on the hosts (test/faults/host-view.ts), not only in etcd.
 * Every case leaves the cluster as it found it (its envs deleted, every
 * daemon running again), so the cases share one cluster.
 *
 * Figures: detect_ms (fault → the cluster shows it), recover_ms (fault →
 * everything converged), lost (requested envs that no host runs, and that
 * the restart policy does not allow to be Lost), duplicates (envs some host
 * runs more than once), orphans (anything a host holds for an env that
 * should not be there).
 */

import { Code, ProtoctlError } from "../../common/errors.js";
import { EnvPhase, NodeState, RestartPolicy } from "../../proto/gen/protoctl/v1/types.js";
import { call, eventually, testEnvSpec } from "../support/controller/cluster.js";
import {
  BURST,
  burst,
  countRunning,
  deleteAll,
  listEnvs,
  names,
  phaseOf,
  phaseSummary,
  placementInStore,
  until,
} from "./burst.js";
import type { FaultCluster } from "./fault-cluster.js";
import { duplicates, machinesOnHosts, missing, orphans } from "./host-view.js";

export interface CaseResult {
  name: string;
  envs: number;
  detect_ms: number;
  recover_ms: number;
  lost: number;
  duplicates: number;
  orphans: string[];
  /** Case-specific figures and findings. */
  extra: Record<string, number | string | boolean>;
}

const CONVERGE_MS = 180_000;
const RUNNING = EnvPhase.ENV_PHASE_RUNNING;

/** Waits until `k` of the envs run: the fault then lands mid-burst. */
async function someRunning(cl: FaultCluster, envs: string[], k: number): Promise<void> {
  const want = Math.min(k, Math.ceil(envs.length / 3));
  await until(cl.c, (all) => countRunning(all, envs) >= want, CONVERGE_MS);
}

/** All of `envs` Running, then counted on the hosts; then the orphan look against the store's placement. */
async function settle(
  cl: FaultCluster,
  envs: string[],
  t0: number,
): Promise<Pick<CaseResult, "recover_ms" | "lost" | "duplicates" | "orphans">> {
  const all = await until(
    cl.c,
    (a) => countRunning(a, envs) === envs.length,
    CONVERGE_MS,
    (a) => phaseSummary(a, envs),
  );
  const recover_ms = Date.now() - t0;
  return { recover_ms, ...(await onHosts(cl, envs, placementInStore(all, envs))) };
}

async function onHosts(
  cl: FaultCluster,
  envs: string[],
  expected: Map<string, Set<string>>,
): Promise<Pick<CaseResult, "lost" | "duplicates" | "orphans">> {
  const placed = await machinesOnHosts(cl.nodes);
  return {
    lost: missing(placed, envs).length,
    duplicates: duplicates(placed, envs).length,
    orphans: await orphans(cl, expected),
  };
}

/** Deletes the case's envs and checks the hosts hold nothing for them. */
async function clear(cl: FaultCluster, envs: string[], r: CaseResult): Promise<CaseResult> {
  await deleteAll(cl.c, envs);
  // deletions finish on the agents a moment after the records go
  let left = await orphans(cl, new Map());
  for (let i = 0; i < 150 && left.length > 0; i++) {
    await new Promise((res) => setTimeout(res, 200));
    left = await orphans(cl, new Map());
  }
  r.orphans.push(...left.map((o) => `after delete: ${o}`));
  return r;
}

/** SIGKILL of the leading controller mid-burst: takeover, every env Running exactly once. */
export async function leaderKill(cl: FaultCluster, n = BURST): Promise<CaseResult> {
  const envs = names("ld", n);
  const leader = await cl.leader();
  if (leader < 0) throw new Error("no controller leads");
  const via = [0, 1, 2].find((i) => i !== leader)!;
  const creating = burst(() => cl.controller(via), envs);
  await someRunning(cl, envs, 20);
  const t0 = Date.now();
  await cl.killController(leader);
  const killed = cl.controllerIds[leader];
  await eventually(
    async () => {
      const v = await call(cl.controller(via), "getVersion", {}, 2000);
      return v.leader !== "" && v.leader !== killed;
    },
    30_000,
    20,
  );
  const detect_ms = Date.now() - t0;
  const failed = await creating;
  const r = await settle(cl, envs, t0);
  await cl.startController(leader);
  return clear(cl, envs, {
    name: "leader-kill",
    envs: envs.length,
    detect_ms,
    ...r,
    extra: { takeover_ms: detect_ms, create_errors: failed.size },
  });
}

/** SIGKILL of an agent mid-burst, then a restart: running envs keep running, nothing orphaned. */
export async function agentKill(cl: FaultCluster, n = BURST): Promise<CaseResult> {
  const envs = names("ag", n);
  const node = cl.nodes[0]!;
  const creating = burst(cl.c, envs);
  await someRunning(cl, envs, 30);
  const before = new Map(
    [...(await listEnvs(cl.c()))]
      .filter(([n, e]) => envs.includes(n) && phaseOf(e) === RUNNING && e.status?.node === node)
      .map(([n, e]) => [n, e.status?.leaderPid ?? 0]),
  );
  const t0 = Date.now();
  await cl.killAgent(node);
  await eventually(async () => (await cl.nodeState(node)) === NodeState.NODE_STATE_NOT_READY, 30_000, 50);
  const detect_ms = Date.now() - t0;
  cl.startAgent(node);
  const failed = await creating;
  await eventually(async () => (await cl.nodeState(node)) === NodeState.NODE_STATE_READY, 90_000, 100);
  const r = await settle(cl, envs, t0);
  const after = await listEnvs(cl.c());
  // the same machine leader (pid) before and after: the env ran through the agent's restart
  const kept = [...before].filter(([n, pid]) => pid !== 0 && after.get(n)?.status?.leaderPid === pid).length;
  return clear(cl, envs, {
    name: "agent-kill",
    envs: envs.length,
    detect_ms,
    ...r,
    extra: { running_on_node_before: before.size, kept_running: kept, create_errors: failed.size },
  });
}

/**
 * Three-member etcd: one member killed mid-burst (no error reaches the
 * client), then a second (a create fails UNAVAILABLE with a clear message,
 * nothing half-written), then both back (everything converges).
 */
export async function etcdQuorum(cl: FaultCluster, n = BURST): Promise<CaseResult> {
  const envs = names("et", n);
  const creating = burst(cl.c, envs);
  await someRunning(cl, envs, 20);
  const t0 = Date.now();
  await cl.killEtcd(2);
  const failed = await creating;
  await until(
    cl.c,
    (a) => countRunning(a, envs) === envs.length,
    CONVERGE_MS,
    (a) => phaseSummary(a, envs),
  );
  const oneDownMs = Date.now() - t0;

  // quorum lost: a create must fail UNAVAILABLE, saying so
  const t1 = Date.now();
  await cl.killEtcd(1);
  let quorumError: ProtoctlError | undefined;
  const spec = testEnvSpec("et-q", { base: { name: "busybox", version: 0 } });
  try {
    await call(cl.c(), "createEnv", { spec, wait: false }, 30_000);
  } catch (err) {
    quorumError = ProtoctlError.from(err);
  }
  const detect_ms = Date.now() - t1;
  const t2 = Date.now();
  await Promise.all([cl.startEtcd(1), cl.startEtcd(2)]);
  // serving again: the first read that answers
  await eventually(() => listEnvs(cl.c()), 60_000, 50);
  const serve_again_ms = Date.now() - t2;
  const all = await listEnvs(cl.c());
  // nothing half-written: the refused env is either absent or whole (spec and status)
  const q = all.get("et-q");
  const halfWritten = q !== undefined && q.status === undefined;
  const everything = q ? [...envs, "et-q"] : envs;
  const r = await settle(cl, everything, t1);
  return clear(cl, everything, {
    name: "etcd-quorum",
    envs: envs.length,
    detect_ms,
    ...r,
    extra: {
      create_errors_one_member_down: failed.size,
      converged_one_member_down_ms: oneDownMs,
      quorum_lost_code: quorumError ? Code[quorumError.code] : "none",
      quorum_lost_message: quorumError?.message ?? "",
      refused_env_recorded: q !== undefined,
      half_written: halfWritten,
      serve_again_ms,
    },
  });
}

/**
 * A node cut from the controllers past its lease and the lost grace, then
 * healed: NotReady, its envs Lost (restart NEVER) or recreated elsewhere
 * (ALWAYS), and after healing no env runs twice.
 */
export async function partition(cl: FaultCluster, graceSeconds: number, n = BURST): Promise<CaseResult> {
  // a short lost grace on every controller for this case (restarted side by side: nothing is in
  // flight between cases, and each finds the CA in etcd)
  await Promise.all(
    cl.controllerIds.map(async (_, i) => {
      await cl.killController(i);
      await cl.startController(i, { lostGraceSeconds: graceSeconds });
    }),
  );
  const envs = names("pt", n);
  const always = (n: string) => Number(n.split("-")[1]) % 2 === 0;
  const node = cl.nodes[cl.nodes.length - 1]!;
  const creating = burst(cl.c, envs, (n) =>
    always(n) ? RestartPolicy.RESTART_POLICY_ALWAYS : RestartPolicy.RESTART_POLICY_NEVER,
  );
  await someRunning(cl, envs, 30);
  const t0 = Date.now();
  await cl.partition(node);
  await eventually(async () => (await cl.nodeState(node)) === NodeState.NODE_STATE_NOT_READY, 30_000, 50);
  const detect_ms = Date.now() - t0;
  const failed = await creating;
  // converged while cut off: ALWAYS envs run on the other nodes, NEVER envs run there or are Lost
  const settledCut = (a: Map<string, import("../../proto/gen/protoctl/v1/types.js").Env>) =>
    envs.every((n) => {
      const e = a.get(n);
      const p = phaseOf(e);
      if (p === RUNNING) return e?.status?.node !== node;
      return p === EnvPhase.ENV_PHASE_LOST && !always(n);
    });
  const cut = await until(cl.c, settledCut, CONVERGE_MS, (a) => phaseSummary(a, envs));
  const recover_ms = Date.now() - t0;
  const lostNever = envs.filter((n) => phaseOf(cut.get(n)) === EnvPhase.ENV_PHASE_LOST);
  const wrongLost = lostNever.filter(always).length;
  const t1 = Date.now();
  await cl.heal(node);
  await eventually(async () => (await cl.nodeState(node)) === NodeState.NODE_STATE_READY, 60_000, 100);
  const running = envs.filter((n) => !lostNever.includes(n));
  // healed: the node's old copies (moved or Lost) are fenced and removed
  await eventually(
    async () => {
      const placed = await machinesOnHosts(cl.nodes);
      return duplicates(placed, envs).length === 0 && lostNever.every((n) => !placed.has(n));
    },
    60_000,
    200,
  ).catch(() => undefined);
  const heal_ms = Date.now() - t1;
  const all = await listEnvs(cl.c());
  const h = await onHosts(cl, running, placementInStore(all, running));
  const placed = await machinesOnHosts(cl.nodes);
  const lostStillRunning = lostNever.filter((n) => placed.has(n)).length;
  const r = await clear(cl, envs, {
    name: "partition",
    envs: envs.length,
    detect_ms,
    recover_ms,
    lost: h.lost + wrongLost,
    duplicates: h.duplicates,
    orphans: h.orphans,
    extra: {
      create_errors: failed.size,
      marked_lost_never: lostNever.length,
      lost_copies_left_running: lostStillRunning,
      heal_ms,
    },
  });
  return r;
}
