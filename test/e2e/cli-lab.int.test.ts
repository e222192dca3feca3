/**
 * `protoctl lab …` end to end: the built CLI against a real `protoctl up`
 * (test/e2e/cli-cluster.ts), one node (lab.int.test.ts covers several hosts
 * through the controller API). A lab file with two networks, a fixed
 * address, an inline file and a counted machine: up (plan on stderr), ls
 * (table, JSON, names), describe (YAML, JSON), graph, exec (names resolve on
 * a shared network only; the command's exit status comes back), a second up
 * that changes nothing, an edit that adds one machine and removes another
 * while the rest keep running, and down, which leaves no lab link on the
 * host. A bad file changes nothing and says where it is wrong.
 */

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ExitCode } from "../../cli/exit-codes.js";
import { type CliCluster, startCliCluster } from "./cli-cluster.js";

let c: CliCluster;
let file: string;
// subnets unlikely to meet another test's lab on this kernel
const RED = "10.231.5";
const BLUE = "10.231.6";

const spec = (machines: string) => `name: cl
networks:
  red: ${RED}.0/24
  blue: { subnet: ${BLUE}.0/24 }
machines:
  gw:
    base: bb
    networks:
      red: ${RED}.10
      blue: ${BLUE}.10
  r-{1..2}:
    base: bb
    networks: [red]
    files:
      - path: /etc/motd
        content: |
          lab cl red
${machines}`;

const B1 = `  b-1:
    base: bb
    networks: [blue]
`;

interface LabJson {
  name: string;
  phase: string;
  networks: Array<{ name: string; subnet: string; vni: number; nodes: string[] }>;
  machines: Array<{
    name: string;
    env: string;
    node: string;
    phase: string;
    addresses: Record<string, string>;
  }>;
}

async function labJson(): Promise<LabJson> {
  const r = await c.cli(["lab", "describe", "cl", "-o", "json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as LabJson;
}

async function leaderPids(): Promise<Record<string, number>> {
  const envs = JSON.parse((await c.cli(["env", "ls", "-o", "json"])).stdout) as Array<{
    spec: { name: string };
    status: { leaderPid: number };
  }>;
  return Object.fromEntries(envs.map((e) => [e.spec.name, e.status.leaderPid]));
}

async function hostLinks(): Promise<string[]> {
  const out = String((await execa("ip", ["-o", "link", "show"])).stdout);
  return out.split("\n").map((l) => l.split(":")[1]?.trim().split("@")[0] ?? "");
}

let vnis: number[] = [];

beforeAll(async () => {
  c = await startCliCluster("lab", { base: "bb" });
  file = join(c.work, "lab.yaml");
}, 400_000);

afterAll(async () => {
  if (c) {
    await c.cli(["lab", "down", "cl"]);
    expect(await c.close()).toEqual([]);
  }
}, 200_000);

describe.sequential("protoctl lab", () => {
  it("a bad file says where it is wrong and creates nothing", async () => {
    await writeFile(file, spec(B1).replace(`red: ${RED}.10`, `red: ${RED}.1`));
    const bad = await c.cli(["lab", "up", file]);
    expect(bad.code).toBe(ExitCode.USAGE);
    expect(bad.stderr).toMatch(/lab\.yaml:\d+:\d+: address 10\.231\.5\.1 is reserved/);
    expect((await c.cli(["lab", "up", join(c.work, "missing.yaml")])).code).toBe(ExitCode.USAGE);
    // what an agent would refuse is refused before anything is made, naming the machine
    await writeFile(file, spec(`${B1}    resources: { memory: 4M }\n`));
    const tiny = await c.cli(["lab", "up", file]);
    expect(tiny.code).toBe(ExitCode.USAGE);
    expect(tiny.stderr).toContain("machine b-1: memory limit below 8 MiB");
    expect((await c.cli(["lab", "ls", "-q"])).stdout).toBe("");
    expect((await c.cli(["env", "ls", "-q"])).stdout).toBe("");
  }, 60_000);

  it("up creates the machines, ls and describe show them with their addresses", async () => {
    await writeFile(file, spec(B1));
    const up = await c.cli(["lab", "up", file]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toBe("lab/cl applied (4 machines)\n");
    expect(up.stderr).toMatch(/create gw: planned/);
    expect(up.stderr).toMatch(/4 created, 0 replaced, 0 deleted, 0 kept/);

    const table = await c.cli(["lab", "ls"]);
    expect(table.stdout).toMatch(/^NAME\s+STATUS\s+MACHINES\s+NETWORKS\s+AGE\n/);
    expect(table.stdout).toMatch(/^cl\s+Ready\s+4\s+2\s/m);
    expect((await c.cli(["lab", "ls", "-q"])).stdout).toBe("cl\n");
    const listed = JSON.parse((await c.cli(["lab", "ls", "-o", "json"])).stdout) as LabJson[];
    expect(listed.map((l) => l.name)).toEqual(["cl"]);

    const lab = await labJson();
    expect(lab.phase).toBe("LAB_PHASE_READY");
    expect(lab.networks.map((n) => [n.name, n.subnet, n.nodes])).toEqual([
      ["red", `${RED}.0/24`, [c.node]],
      ["blue", `${BLUE}.0/24`, [c.node]],
    ]);
    const m = Object.fromEntries(lab.machines.map((x) => [x.name, x]));
    expect(Object.keys(m).sort()).toEqual(["b-1", "gw", "r-1", "r-2"]);
    expect(m.gw).toMatchObject({ env: "cl-gw", node: c.node, phase: "ENV_PHASE_RUNNING" });
    expect(m.gw!.addresses).toEqual({ red: `${RED}.10`, blue: `${BLUE}.10` });
    expect(Object.keys(m["r-1"]!.addresses)).toEqual(["red"]);
    expect(parseYaml((await c.cli(["lab", "describe", "cl"])).stdout)).toEqual(lab);
    expect((await c.cli(["env", "ls", "-q"])).stdout).toBe("cl-b-1\ncl-gw\ncl-r-1\ncl-r-2\n");

    const dot = await c.cli(["lab", "graph", "cl"]);
    expect(dot.stdout).toMatch(/^graph "lab cl" \{/);
    expect(dot.stdout).toContain(`"machine:gw" -- "net:red" [label="${RED}.10"]`);

    // on the host: one VXLAN per network while the lab is up
    vnis = lab.networks.map((n) => n.vni);
    const links = await hostLinks();
    for (const v of vnis) expect(links).toContain(`vx-${v}`);
  }, 180_000);

  it("exec: the file is there, names resolve on a shared network only, the exit status comes back", async () => {
    expect(await c.cli(["lab", "exec", "cl", "r-1", "--", "cat", "/etc/motd"])).toEqual({
      code: 0,
      stdout: "lab cl red\n",
      stderr: "",
    });
    const ping = await c.cli(["lab", "exec", "cl", "r-1", "--", "ping", "-c", "1", "-W", "5", "r-2"]);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
    expect(ping.stdout).toMatch(/1 packets received/);
    const gw = await c.cli(["lab", "exec", "cl", "b-1", "--", "ping", "-c", "1", "-W", "5", "gw"]);
    expect(gw.stdout).toContain(`${BLUE}.10`);
    const other = await c.cli(["lab", "exec", "cl", "r-1", "--", "ping", "-c", "1", "-W", "1", "b-1"]);
    expect(other.code).not.toBe(0);
    const status = await c.cli(["lab", "exec", "cl", "gw", "--", "sh", "-c", "exit 9"]);
    expect(status.code).toBe(9);
    expect((await c.cli(["lab", "exec", "cl", "nope", "--", "true"])).code).toBe(ExitCode.NOT_FOUND);
    expect((await c.cli(["lab", "exec", "no-such-lab", "gw", "--", "true"])).code).toBe(ExitCode.NOT_FOUND);
  }, 120_000);

  it("a second up changes nothing; an edit adds and removes only what changed", async () => {
    const before = await leaderPids();
    const again = await c.cli(["lab", "up", file]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/no change/);
    expect(await leaderPids()).toEqual(before);

    await writeFile(file, spec("  r-3:\n    base: bb\n    networks: [red]\n"));
    const edit = await c.cli(["lab", "up", file]);
    expect(edit.code, edit.stderr).toBe(0);
    expect(edit.stdout).toBe("lab/cl applied (4 machines)\n");
    expect(edit.stderr).toMatch(/1 created, 0 replaced, 1 deleted/);
    const after = await leaderPids();
    expect(Object.keys(after).sort()).toEqual(["cl-gw", "cl-r-1", "cl-r-2", "cl-r-3"]);
    for (const kept of ["cl-gw", "cl-r-1", "cl-r-2"]) expect(after[kept], kept).toBe(before[kept]);
    const ping = await c.cli(["lab", "exec", "cl", "r-3", "--", "ping", "-c", "1", "-W", "5", "r-1"]);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
  }, 180_000);

  it("down removes the machines and the lab's links; a second down is not found", async () => {
    const down = await c.cli(["lab", "down", "cl"]);
    expect(down).toMatchObject({ code: 0, stdout: "lab/cl deleted\n" });
    expect((await c.cli(["lab", "ls", "-q"])).stdout).toBe("");
    expect((await c.cli(["env", "ls", "-q"])).stdout).toBe("");
    const links = await hostLinks();
    for (const v of vnis) expect(links).not.toContain(`vx-${v}`);
    expect((await c.cli(["lab", "down", "cl"])).code).toBe(ExitCode.NOT_FOUND);
    expect((await c.cli(["lab", "describe", "cl"])).code).toBe(ExitCode.NOT_FOUND);
  }, 120_000);
});
