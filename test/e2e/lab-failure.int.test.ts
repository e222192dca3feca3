/**
 * A node lost during a lab, end to end on three network-namespace hosts
 * (lab-cluster.ts, lost grace 2 s). Six machines on two networks spread
 * over a0..a2; the agent of a2 is killed with SIGKILL (its machines keep
 * running, unreachable); once a2 is NotReady past the grace period, `lab
 * describe` names the machines that went with it; `lab up` again recreates
 * them on a0 and a1 and re-wires the networks, so they reach their peers by
 * name across hosts. Then a2's agent comes back (adopts its old machines;
 * the controller's orphan sweep deletes them, as they now live elsewhere)
 * and `lab down` leaves nothing on any host.
 */
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "../../common/exec.js";
import { EnvPhase, LabPhase } from "../../proto/gen/protoctl/v1/types.js";
import { call, eventually } from "../support/controller/cluster.js";
import {
  applyLab,
  execIn,
  hostLinks,
  type LabCluster,
  readyNodes,
  recordedEvents,
  startLabCluster,
} from "./lab-cluster.js";

let cl: LabCluster;

beforeAll(async () => {
  cl = await startLabCluster({ hosts: 3, lostGraceSeconds: 2 });
}, 240_000);

afterAll(async () => {
  await cl?.stop();
}, 120_000);

const SPEC = `
name: lf
networks:
  red: 10.78.1.0/24
  blue: 10.78.2.0/24
machines:
  r-{1..3}: { base: busybox, networks: [red] }
  b-{1..3}: { base: busybox, networks: [blue] }
`;

const env = (m: string) => `lf-${m}`;

async function pings(from: string, to: string): Promise<boolean> {
  return (await execIn(cl.c, env(from), ["ping", "-c", "1", "-W", "1", to])).code === 0;
}

/** nspawn processes of this lab's machines on one node (machine names end in a hash of the node). */
async function nspawnOf(node: string): Promise<string[]> {
  const { machineName } = await import("../../agent/host/machines/naming.js");
  const names = ["r-1", "r-2", "r-3", "b-1", "b-2", "b-3"].map((m) => machineName(node, env(m)));
  const { stdout } = await run("ps", ["-eo", "args"]);
  return stdout
    .split("\n")
    .filter((l) => l.includes("systemd-nspawn") && names.some((n) => l.includes(`--machine=${n}`)));
}

it("shows what a lost node took, recreates it elsewhere with its networks, and cleans up", async () => {
  const c = cl.c;
  await applyLab(c, SPEC);
  let lab = await call(c, "getLab", { name: "lf" });
  expect(lab.phase).toBe(LabPhase.LAB_PHASE_READY);
  expect(new Set(lab.machines.map((m) => m.node)).size).toBe(3);

  // a2 dies: SIGKILL, its machines keep running on the host but nobody manages them
  const dead = cl.nodes[2]!;
  const gone = lab.machines
    .filter((m) => m.node === dead)
    .map((m) => m.name)
    .sort();
  expect(gone.length).toBeGreaterThan(0);
  expect(await nspawnOf(dead)).toHaveLength(gone.length);
  const killedMs = Date.now();
  await cl.kill(cl.agents.get(dead)!, "SIGKILL");

  // NotReady, then lost past the grace period: describe names the machines that went with it
  lab = await eventually(
    async () => {
      const l = await call(c, "getLab", { name: "lf" });
      const lost = l.machines.filter((m) => m.phase === EnvPhase.ENV_PHASE_LOST).map((m) => m.name);
      return lost.length === gone.length ? l : undefined;
    },
    60_000,
    200,
  );
  expect(lab.phase).toBe(LabPhase.LAB_PHASE_DEGRADED);
  const note = new RegExp(`node ${dead} lost with ([a-z0-9, -]+): run \`lab up\` again`).exec(lab.message);
  expect(note?.[1]?.split(", ").sort(), lab.message).toEqual(gone);
  expect(lab.machines.filter((m) => m.phase === EnvPhase.ENV_PHASE_LOST).map((m) => m.node)).toEqual(
    gone.map(() => dead),
  );
  const since = (await recordedEvents(c, ["node."])).filter((e) => e.timeMs >= killedMs);
  expect(since.map((e) => `${e.kind} ${e.node}`)).toEqual([`node.notready ${dead}`, `node.lost ${dead}`]);

  // lab up again: the lost machines come back on the two remaining nodes, the others are kept
  const t0 = Date.now();
  const progress = await applyLab(c, SPEC);
  console.log(`lab up after losing ${dead} (${gone.length} machines recreated): ${Date.now() - t0} ms`);
  expect(
    progress
      .filter((p) => p.action === "replace" && p.message === "lost: recreating")
      .map((p) => p.machine)
      .sort(),
  ).toEqual(gone);
  expect(progress.filter((p) => p.action === "create" || p.action === "delete")).toEqual([]);
  lab = await call(c, "getLab", { name: "lf" });
  expect(lab.phase).toBe(LabPhase.LAB_PHASE_READY);
  expect(lab.message).toBe("");
  const node = new Map(lab.machines.map((m) => [m.name, m.node]));
  for (const m of gone) expect(cl.nodes.slice(0, 2), m).toContain(node.get(m));
  for (const n of lab.networks) expect(n.nodes, n.name).not.toContain(dead);

  // re-wired: every recreated machine reaches its network's peers by name, across hosts
  const nets = { red: ["r-1", "r-2", "r-3"], blue: ["b-1", "b-2", "b-3"] };
  let crossHost = 0;
  for (const group of Object.values(nets)) {
    for (const a of group.filter((m) => gone.includes(m))) {
      for (const b of group) {
        if (a === b) continue;
        expect(await pings(a, b), `${a} -> ${b}`).toBe(true);
        expect(await pings(b, a), `${b} -> ${a}`).toBe(true);
        if (node.get(a) !== node.get(b)) crossHost++;
      }
    }
  }
  expect(crossHost).toBeGreaterThan(0);
  expect(await pings(gone[0]!.startsWith("r") ? gone[0]! : "r-1", "b-1")).toBe(false);
  expect(await recordedEvents(c, ["lab.network_failed"])).toEqual([]);

  // a2 comes back: it adopts its old machines, the controller deletes them (they live elsewhere now)
  cl.startAgent(2);
  await eventually(async () => (await readyNodes(c)) === 3, 60_000, 200);
  await eventually(async () => ((await nspawnOf(dead)).length === 0 ? true : undefined), 30_000, 200);
  lab = await call(c, "getLab", { name: "lf" });
  expect(lab.phase).toBe(LabPhase.LAB_PHASE_READY);
  for (const m of gone) expect(lab.machines.find((x) => x.name === m)!.node).toBe(node.get(m));

  // down: nothing left on any host, the returned node's stale bridges included
  await call(c, "deleteLab", { name: "lf", wait: true }, 60_000);
  expect((await call(c, "listEnvs", { node: "", group: "" })).envs).toEqual([]);
  for (const h of cl.hosts.hosts) {
    const links = await hostLinks(cl.hosts, h);
    expect(
      links.filter((l) => l !== "lo" && l !== "eth0"),
      h.name,
    ).toEqual([]);
  }
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  expect(mounts.split("\n").filter((l) => l.includes("/@env/"))).toEqual([]);
  for (const n of cl.nodes) expect(await nspawnOf(n), n).toEqual([]);
}, 300_000);
