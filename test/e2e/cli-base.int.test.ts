/**
 * `protoctl base …` end to end beyond import/build (cli.int.test.ts): the
 * built CLI against a real `protoctl up` (test/e2e/cli-cluster.ts) and a
 * second node, a `protoctl agent` joined with a token. update (argv,
 * --command, --script; a failing update makes no version), ls (table, wide,
 * JSON, -q) and describe (YAML, JSON) with the versions' lineage, push to
 * the second node (an env there sees the update's file), rm of a version and
 * of a base in use. Then the second node is drained (its env moves to the
 * first, files and all) and removed once its agent stops. Errors give the
 * documented exit codes and change nothing.
 */
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ExitCode } from "../../cli/exit-codes.js";
import { type CliCluster, startCliCluster } from "./cli-cluster.js";

let c: CliCluster;
let n2: string;

beforeAll(async () => {
  c = await startCliCluster("base");
  n2 = `${c.node}-b`;
}, 400_000);

afterAll(async () => {
  if (c) expect(await c.close()).toEqual([]);
}, 300_000);

interface BaseJson {
  name: string;
  latest: number;
  versions: Array<{ version: number; source: string; parent?: string; nodes: string[]; state: string }>;
}

async function bases(): Promise<BaseJson[]> {
  const r = await c.cli(["base", "ls", "-o", "json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as BaseJson[];
}

const versionsOf = async (name: string) =>
  ((await bases()).find((b) => b.name === name)?.versions ?? []).map((v) => v.version);

describe.sequential("protoctl base", () => {
  it("update makes N+1 from argv, --command and --script, each on the one before", async () => {
    expect((await c.cli(["base", "import", "bb", "--dir", c.rootfs])).code).toBe(0);
    const u2 = await c.cli(["base", "update", "bb", "--", "/bin/sh", "-c", "echo two > /etc/release"]);
    expect(u2.code, u2.stderr).toBe(0);
    expect(u2.stdout).toBe("base/bb@2 sealed (from bb@1)\n");
    expect(u2.stderr).toContain("Updating base bb");
    const u3 = await c.cli(["base", "update", "bb", "--command", "echo three >> /etc/release"]);
    expect(u3.stdout).toBe("base/bb@3 sealed (from bb@2)\n");
    const script = join(c.work, "update.sh");
    await writeFile(script, "set -e\nmkdir -p /opt/app\necho four > /opt/app/version\n");
    const u4 = await c.cli(["base", "update", "bb", "--script", script]);
    expect(u4.code, u4.stderr).toBe(0);
    expect(u4.stdout).toBe("base/bb@4 sealed (from bb@3)\n");

    expect((await c.cli(["env", "create", "bu-1", "--base", "bb"])).code).toBe(0);
    try {
      const cat = await c.cli(["env", "exec", "bu-1", "--", "cat", "/etc/release", "/opt/app/version"]);
      expect(cat).toEqual({ code: 0, stdout: "two\nthree\nfour\n", stderr: "" });
    } finally {
      expect((await c.cli(["env", "rm", "bu-1"])).code).toBe(0);
    }

    // on the host: four sealed versions in the pool
    const held = (await readdir(join(c.poolMount(), "@base"))).filter((e) => e.startsWith("bb@"));
    expect(held.sort()).toEqual(["bb@1", "bb@2", "bb@3", "bb@4"]);
  }, 180_000);

  it("a failing update, an unknown base or bad flags make no version", async () => {
    const failed = await c.cli(["base", "update", "bb", "--command", "echo cannot >&2; exit 4"]);
    // a command that failed on a node: status 1, as `protoctl --help` documents
    expect(failed.code).toBe(ExitCode.FAILURE);
    expect(failed.stderr).toMatch(/cannot/);
    const unknown = await c.cli(["base", "update", "no-such-base", "--command", "true"]);
    expect(unknown.code).toBe(ExitCode.NOT_FOUND);
    expect(unknown.stderr).toMatch(/^error: no base named no-such-base\nhint: /m);
    const node = await c.cli(["base", "update", "bb", "--node", "no-such-node", "--command", "true"]);
    expect(node.code).toBe(ExitCode.NOT_FOUND);
    expect((await c.cli(["base", "update", "bb"])).code).toBe(ExitCode.USAGE);
    expect((await c.cli(["base", "update", "bb", "--script", join(c.work, "missing.sh")])).code).toBe(
      ExitCode.USAGE,
    );
    expect(await versionsOf("bb")).toEqual([1, 2, 3, 4]);
    expect((await readdir(join(c.poolMount(), "@base"))).filter((e) => e.startsWith(".tmp-"))).toEqual([]);
  }, 120_000);

  it("ls (table, wide, JSON, names) and describe (YAML, JSON) show the versions and their lineage", async () => {
    const table = await c.cli(["base", "ls"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+LATEST\s+VERSIONS\s+SIZE\s+NODES\s+AGE/);
    expect(table.stdout).toMatch(/^bb\s+@4\s+4\s+\S+\s+1\s/m);
    const wide = await c.cli(["base", "ls", "-o", "wide"]);
    expect(wide.stdout.split("\n")[0]).toMatch(/STATE\s+SOURCE/);
    expect(wide.stdout).toMatch(/^bb\s+@4\s.*\sLocal\s+update:/m);
    expect((await c.cli(["base", "ls", "-q"])).stdout).toBe("bb\n");

    const [bb] = await bases();
    expect(bb).toMatchObject({ name: "bb", latest: 4 });
    expect(bb!.versions.map((v) => [v.version, v.parent ?? "", v.nodes, v.state])).toEqual([
      [1, "", [c.node], "BASE_VERSION_STATE_LOCAL"],
      [2, "bb@1", [c.node], "BASE_VERSION_STATE_LOCAL"],
      [3, "bb@2", [c.node], "BASE_VERSION_STATE_LOCAL"],
      [4, "bb@3", [c.node], "BASE_VERSION_STATE_LOCAL"],
    ]);
    expect(bb!.versions[2]!.source).toBe("update:/bin/sh -c echo three >> /etc/release");

    const yaml = await c.cli(["base", "describe", "bb"]);
    expect(yaml.code).toBe(0);
    expect(parseYaml(yaml.stdout)).toEqual(bb);
    const json = await c.cli(["base", "describe", "bb", "-o", "json"]);
    expect(JSON.parse(json.stdout)).toEqual(bb);
    expect((await c.cli(["base", "describe", "no-such-base"])).code).toBe(ExitCode.NOT_FOUND);
    expect((await c.cli(["base", "describe", "Bad_Name"])).code).toBe(ExitCode.USAGE);
  }, 60_000);

  it("push sends a version to a second node; an env placed there runs on it", async () => {
    await c.joinAgent(n2);
    // a version, base or node nobody has: not found (3), with the name in the message
    const bad = await c.cli(["base", "push", "bb@9", "--to", n2]);
    expect(bad.code).toBe(ExitCode.NOT_FOUND);
    expect(bad.stderr).toMatch(/^error: no base named bb@9\nhint: /m);
    expect((await c.cli(["base", "push", "no-such-base", "--to", n2])).code).toBe(ExitCode.NOT_FOUND);
    const node = await c.cli(["base", "push", "bb@4", "--to", "no-such-node"]);
    expect(node.code).toBe(ExitCode.NOT_FOUND);
    expect(node.stderr).toMatch(/no node named no-such-node/);

    const push = await c.cli(["base", "push", "bb@4", "--to", n2, "--wait-local"]);
    expect(push.code, push.stderr).toBe(0);
    expect(push.stdout).toBe(`base/bb@4 pushed to ${n2}\n`);
    const v4 = (await bases())[0]!.versions.find((v) => v.version === 4)!;
    expect(v4.nodes.sort()).toEqual([c.node, n2].sort());
    // only the pushed version went there
    expect((await bases())[0]!.versions.filter((v) => v.nodes.includes(n2)).map((v) => v.version)).toEqual([
      4,
    ]);
    expect((await c.cli(["base", "ls"])).stdout).toMatch(/^bb\s+@4\s+4\s+\S+\s+2\s/m);

    const create = await c.cli([
      "env",
      "create",
      "pu-1",
      "--base",
      "bb@4",
      "--node",
      n2,
      "--restart",
      "always",
    ]);
    expect(create.code, create.stderr).toBe(0);
    expect(create.stdout).toBe(`env/pu-1 created from bb@4 on node ${n2} (Running)\n`);
    const cat = await c.cli(["env", "exec", "pu-1", "--", "cat", "/opt/app/version"]);
    expect(cat).toEqual({ code: 0, stdout: "four\n", stderr: "" });
  }, 240_000);

  it("node drain moves the env off the node, its files with it; node rm needs the agent stopped", async () => {
    await c.cli(["env", "exec", "pu-1", "--", "sh", "-c", "echo written on n2 > /root/note"]);
    const drain = await c.cli(["node", "drain", n2]);
    expect(drain.code, drain.stderr).toBe(0);
    expect(drain.stdout).toBe(`node/${n2} drained\n`);
    expect((await c.cli(["node", "ls"])).stdout).toMatch(
      new RegExp(`^${n2}\\s+Ready,SchedulingDisabled,Draining\\s+0\\s`, "m"),
    );
    const d = JSON.parse((await c.cli(["env", "describe", "pu-1", "-o", "json"])).stdout) as {
      status: { phase: string; node: string };
    };
    expect(d.status).toMatchObject({ phase: "ENV_PHASE_RUNNING", node: c.node });
    const note = await c.cli(["env", "exec", "pu-1", "--", "cat", "/root/note", "/opt/app/version"]);
    expect(note).toEqual({ code: 0, stdout: "written on n2\nfour\n", stderr: "" });

    // a Ready node is not removed: its agent would join again
    const early = await c.cli(["node", "rm", n2]);
    expect(early.code).toBe(ExitCode.PRECONDITION);
    expect((await c.cli(["node", "ls", "-q"])).stdout.split("\n")).toContain(n2);

    await c.stopAgent(n2);
    const deadline = Date.now() + 90_000;
    let rm = await c.cli(["node", "rm", n2]);
    while (rm.code === ExitCode.PRECONDITION && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      rm = await c.cli(["node", "rm", n2]);
    }
    expect(rm).toMatchObject({ code: 0, stdout: `node/${n2} removed\n` });
    expect((await c.cli(["node", "ls", "-q"])).stdout).toBe(`${c.node}\n`);
    expect((await c.cli(["node", "rm", n2])).code).toBe(ExitCode.NOT_FOUND);
    expect((await c.cli(["node", "drain", n2])).code).toBe(ExitCode.NOT_FOUND);
    // the base no longer lists the removed node as a holder
    expect((await bases())[0]!.versions.find((v) => v.version === 4)!.nodes).toEqual([c.node]);
  }, 240_000);

  it("rm: a version in use is refused, an unused one goes, then the whole base", async () => {
    const busy = await c.cli(["base", "rm", "bb@4"]);
    expect(busy.code).toBe(ExitCode.PRECONDITION);
    expect(busy.stderr).toMatch(/pu-1/);
    const one = await c.cli(["base", "rm", "bb@2"]);
    expect(one.code, one.stderr).toBe(0);
    // what was deleted, not what is left
    expect(one.stdout).toBe("base/bb@2 deleted\n");
    expect(await versionsOf("bb")).toEqual([1, 3, 4]);
    // the agent deletes the subvolume when the controller tells it: eventually, not in the same call
    const held = async () => (await readdir(join(c.poolMount(), "@base"))).filter((e) => e.startsWith("bb@"));
    const deadline = Date.now() + 30_000;
    while ((await held()).includes("bb@2") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    expect((await held()).sort()).toEqual(["bb@1", "bb@3", "bb@4"]);
    expect((await c.cli(["env", "rm", "pu-1"])).code).toBe(0);
    const all = await c.cli(["base", "rm", "bb"]);
    expect(all.code, all.stderr).toBe(0);
    expect(
      all.stdout
        .replace(/ deleted\n$/, "")
        .split(", ")
        .sort(),
    ).toEqual(["base/bb@1", "base/bb@3", "base/bb@4"]);
    expect((await c.cli(["base", "ls", "-q"])).stdout).toBe("");
    // every version leaves the pool, not only the latest
    const gone = Date.now() + 30_000;
    while ((await held()).length && Date.now() < gone) await new Promise((r) => setTimeout(r, 250));
    expect(await held()).toEqual([]);
  }, 120_000);
});
