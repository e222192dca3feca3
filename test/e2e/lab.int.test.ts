/**
 * Labs end to end on three network-namespace hosts: real etcd, a controller
 * and three real agents (lab-cluster.ts). A lab of five machines on two
 * networks (red, blue; `gw` on both, with a shell layer) is spread over the
 * three nodes; every machine reaches the machines of its networks by name
 * across hosts and not the others; a second `lab up` adding r-3 and
 * removing b-2 touches only those (the others keep their leader PIDs, their
 * /etc/hosts is rewritten in place); `lab down` leaves no bridge, VXLAN,
 * veth, machine process or env mount on any host.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Lab, LabPhase, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";
import { call, eventually, importBaseFromDir, streamed } from "../support/controller/cluster.js";
import {
  applyLab,
  execIn,
  hostLinks,
  type LabCluster,
  recordedEvents,
  startLabCluster,
} from "./lab-cluster.js";

let cl: LabCluster;

beforeAll(async () => {
  cl = await startLabCluster({ hosts: 3 });
}, 240_000);

afterAll(async () => {
  await cl?.stop();
}, 120_000);

const spec = (machines: string) => `
name: lt
networks:
  red: 10.77.1.0/24
  blue: 10.77.2.0/24
machines:
${machines}
  gw:
    base: busybox
    layers: [greet]
    networks: [red, blue]
`;

const FIRST = `  r-{1..2}: { base: busybox, networks: [red] }
  b-{1..2}: { base: busybox, networks: [blue] }`;
const SECOND = `  r-{1..3}: { base: busybox, networks: [red] }
  b-1: { base: busybox, networks: [blue] }`;

const env = (m: string) => `lt-${m}`;

async function pings(from: string, to: string): Promise<boolean> {
  const r = await execIn(cl.c, env(from), ["ping", "-c", "1", "-W", "1", to]);
  return r.code === 0;
}

function byMachine(lab: Lab) {
  return new Map(lab.machines.map((m) => [m.name, m]));
}

async function leaderPids(): Promise<Map<string, number>> {
  const { envs } = await call(cl.c, "listEnvs", { node: "", group: "lt" });
  return new Map(envs.map((e) => [e.spec!.name, e.status!.leaderPid]));
}

it("deploys, reaches by name across hosts, applies a difference, and goes without a trace", async () => {
  const c = cl.c;
  // a layer through the controller: AddLayer stores the recipe, the env loop hands it to the agent
  await streamed(
    c.addLayer({
      layer: {
        name: "greet",
        recipe: {
          kind: RecipeKind.RECIPE_KIND_SHELL,
          main: Buffer.from("echo hello-layer > /etc/greet\n"),
          files: [],
        },
        parents: [],
      },
      buildOn: [],
    }),
  );

  const t0 = Date.now();
  await applyLab(c, spec(FIRST));
  const upMs = Date.now() - t0;
  let lab = await call(c, "getLab", { name: "lt" });
  expect(lab.phase).toBe(LabPhase.LAB_PHASE_READY);
  expect(lab.machines.map((m) => m.name).sort()).toEqual(["b-1", "b-2", "gw", "r-1", "r-2"]);
  const nodes = new Set(lab.machines.map((m) => m.node));
  expect(nodes.size).toBe(3); // spread: anti-affinity within the lab
  const m1 = byMachine(lab);
  expect(m1.get("gw")!.addresses).toEqual({ red: expect.any(String), blue: expect.any(String) });
  console.log(`lab up (5 machines, 3 nodes, first layer build included): ${upMs} ms`);

  // the layer is there
  expect((await execIn(c, env("gw"), ["cat", "/etc/greet"])).stdout).toBe("hello-layer\n");

  // by name across hosts on shared networks, and not across networks
  const red = ["r-1", "r-2", "gw"];
  const blue = ["b-1", "b-2", "gw"];
  for (const group of [red, blue]) {
    for (const a of group)
      for (const b of group) if (a !== b) expect(await pings(a, b), `${a} -> ${b}`).toBe(true);
  }
  const crossHost = red.some((a) => red.some((b) => m1.get(a)!.node !== m1.get(b)!.node));
  expect(crossHost).toBe(true);
  expect(await pings("r-1", "b-1")).toBe(false); // no name
  expect(await pings("r-1", m1.get("b-1")!.addresses.blue!)).toBe(false); // no path either
  expect(await pings("b-2", m1.get("r-2")!.addresses.red!)).toBe(false);

  // same file again: nothing changes
  const pids1 = await leaderPids();
  const again = await applyLab(c, spec(FIRST));
  expect(
    again.filter((p) => p.action === "create" || p.action === "delete" || p.action === "replace"),
  ).toEqual([]);

  // the difference: r-3 added, b-2 removed; the others keep running as they were
  await applyLab(c, spec(SECOND));
  lab = await call(c, "getLab", { name: "lt" });
  expect(lab.machines.map((m) => m.name).sort()).toEqual(["b-1", "gw", "r-1", "r-2", "r-3"]);
  const pids2 = await leaderPids();
  for (const m of ["r-1", "r-2", "b-1", "gw"]) expect(pids2.get(env(m)), m).toBe(pids1.get(env(m)));
  expect(pids2.has(env("b-2"))).toBe(false);
  for (const m of ["r-1", "r-2", "gw"]) {
    expect(await pings(m, "r-3"), `${m} -> r-3`).toBe(true);
    expect(await pings("r-3", m), `r-3 -> ${m}`).toBe(true);
  }
  expect(await pings("b-1", "b-2")).toBe(false);
  expect(await pings("r-3", "b-1")).toBe(false);
  // every EnsureNetwork worked the first time (a second one on a node used to fail under nsenter)
  expect(await recordedEvents(c, ["lab.network_failed", "env.failed"])).toEqual([]);
  const { envs } = await call(c, "listEnvs", { node: "", group: "lt" });
  expect(envs.map((e) => [e.spec!.name, e.status!.message])).toEqual(envs.map((e) => [e.spec!.name, ""]));

  // describe, graph
  const dot = await call(c, "labGraph", { name: "lt", format: "dot" });
  expect(dot.text).toContain('"machine:r-3" -- "net:red"');
  const mermaid = await call(c, "labGraph", { name: "lt", format: "mermaid" });
  expect(mermaid.text.startsWith("flowchart LR")).toBe(true);
  expect((await call(c, "listLabs", {})).labs.map((l) => l.name)).toEqual(["lt"]);

  // down: nothing left on any host
  const t1 = Date.now();
  await call(c, "deleteLab", { name: "lt", wait: true }, 60_000);
  const downMs = Date.now() - t1;
  console.log(`lab down (5 machines, 3 nodes): ${downMs} ms`);
  await expect(call(c, "getLab", { name: "lt" })).rejects.toMatchObject({ code: 5 });
  expect((await call(c, "listEnvs", { node: "", group: "" })).envs).toEqual([]);
  for (const h of cl.hosts.hosts) {
    const links = await hostLinks(cl.hosts, h);
    expect(
      links.filter((l) => l !== "lo" && l !== "eth0"),
      h.name,
    ).toEqual([]);
  }
  const { readFile } = await import("node:fs/promises");
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  expect(mounts.split("\n").filter((l) => l.includes("/@env/"))).toEqual([]);
  const machines = await eventually(
    async () => {
      const { stdout } = await (await import("../../common/exec.js")).run("ps", ["-eo", "args"]);
      const left = stdout.split("\n").filter((l) => l.includes("systemd-nspawn") && l.includes("lt-"));
      return left.length === 0 ? left : undefined;
    },
    10_000,
    100,
  );
  expect(machines).toEqual([]);
}, 300_000);

it("a lab on a base only one node holds: the nodes it spreads to get the base pushed first", async () => {
  const c = cl.c;
  const rootfs = await mkdtemp(join(tmpdir(), "protoctl-lab-solo-"));
  try {
    await makeBusyboxRootfs(rootfs);
    await writeFile(join(rootfs, "etc/motd"), "solo\n");
    await importBaseFromDir(c, cl.nodes[0]!, "solo", rootfs);
  } finally {
    await rm(rootfs, { recursive: true, force: true });
  }
  await eventually(async () => (await call(c, "getBase", { name: "solo" })).versions[0]?.nodes.length === 1);
  await applyLab(
    c,
    "name: so\nnetworks:\n  red: 10.77.3.0/24\nmachines:\n  s-{1..3}: { base: solo, networks: [red] }\n",
  );
  const lab = await call(c, "getLab", { name: "so" });
  expect(lab.phase).toBe(LabPhase.LAB_PHASE_READY);
  // anti-affinity spreads the machines over the three nodes; two of them lacked the base
  expect(new Set(lab.machines.map((m) => m.node)).size).toBe(3);
  for (const m of ["s-1", "s-2", "s-3"]) {
    expect((await execIn(c, `so-${m}`, ["cat", "/etc/motd"])).stdout).toBe("solo\n");
  }
  expect((await execIn(c, "so-s-1", ["ping", "-c", "1", "-W", "1", "s-3"])).code).toBe(0);
  const solo = await call(c, "getBase", { name: "solo" });
  expect(solo.versions[0]!.nodes.sort()).toEqual([...cl.nodes].sort());
  await call(c, "deleteLab", { name: "so", wait: true }, 60_000);
}, 180_000);
