/**
 * Faults under load on the real thing (issue 19): a three-member etcd, three
 * controllers and three real agents in network-namespace hosts
 * (fault-cluster.ts), a burst of 100 busybox env creates in flight when each
 * fault lands (cases.ts). Every case asserts, on the hosts: no env lost, none
 * running twice, nothing orphaned. The cases share one cluster and run in
 * order; each leaves it whole. Times are printed (bench/faults reports them),
 * never asserted.
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { deleteAll, listEnvs } from "./burst.js";
import { agentKill, type CaseResult, etcdQuorum, leaderKill, partition } from "./cases.js";
import { type FaultCluster, startFaultCluster } from "./fault-cluster.js";

let cl: FaultCluster;
/** Envs per burst: 100 by default (issue 19); PROTOCTL_FAULTS_ENVS lowers it while working on a case. */
const N = Number(process.env.PROTOCTL_FAULTS_ENVS ?? 100);
/** Cases to run (comma separated); all by default. */
const ONLY = process.env.PROTOCTL_FAULTS_CASES?.split(",");
const run = (name: string) => (ONLY && !ONLY.includes(name) ? it.skip : it);

beforeAll(async () => {
  cl = await startFaultCluster();
}, 240_000);

// a failed case must not fail the next ones: bring everything back and delete what it made
afterEach(async () => {
  await cl.restore();
  await deleteAll(cl.c, [...(await listEnvs(cl.c())).keys()]);
}, 300_000);

afterAll(async () => {
  await cl?.stop();
}, 120_000);

function report(r: CaseResult): void {
  console.log(`fault ${r.name}: ${JSON.stringify(r)}`);
  expect(r.lost, "envs lost").toBe(0);
  expect(r.duplicates, "envs running twice").toBe(0);
  expect(r.orphans, "orphans on the hosts").toEqual([]);
}

run("leader-kill")(
  "SIGKILL of the leading controller mid-burst: takeover, every env Running exactly once",
  async () => {
    const r = await leaderKill(cl, N);
    report(r);
    expect(r.extra.create_errors).toBe(0);
  },
  600_000,
);

run("agent-kill")(
  "SIGKILL of an agent mid-burst and a restart: its envs keep running, nothing orphaned",
  async () => {
    const r = await agentKill(cl, N);
    report(r);
    expect(r.extra.running_on_node_before).toBeGreaterThan(0);
    expect(r.extra.kept_running).toBe(r.extra.running_on_node_before);
  },
  600_000,
);

run("etcd-quorum")(
  "three-member etcd: one member down is invisible, two is UNAVAILABLE and writes nothing, back converges",
  async () => {
    const r = await etcdQuorum(cl, N);
    report(r);
    expect(r.extra.create_errors_one_member_down).toBe(0);
    expect(r.extra.quorum_lost_code).toBe("UNAVAILABLE");
    expect(r.extra.quorum_lost_message).toMatch(/etcd|store/i);
    expect(r.extra.half_written).toBe(false);
  },
  600_000,
);

run("partition")(
  "a node partitioned past its lease: NotReady, Lost or moved by restart policy, healed without a twin",
  async () => {
    const r = await partition(cl, 4, N);
    report(r);
    expect(r.extra.marked_lost_never).toBeGreaterThan(0);
    expect(r.extra.lost_copies_left_running).toBe(0);
  },
  600_000,
);
