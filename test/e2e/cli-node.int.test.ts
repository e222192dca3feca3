/**
 * `protoctl node …` end to end: the built CLI against a real `protoctl up`
 * (test/e2e/cli-cluster.ts). ls (table, JSON, -q), describe (JSON with the
 * node's capabilities, the package cache among them), cordon (a new env is
 * left pending, the running ones stay) and uncordon (the pending env runs), a join token,
 * and the exit codes for an unknown node.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../cli/exit-codes.js";
import { type CliCluster, startCliCluster } from "./cli-cluster.js";

let c: CliCluster;

beforeAll(async () => {
  c = await startCliCluster("node");
}, 400_000);

afterAll(async () => {
  if (c) expect(await c.close()).toEqual([]);
}, 200_000);

describe.sequential("protoctl node", () => {
  it("ls as a table, JSON and names", async () => {
    const table = await c.cli(["node", "ls"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+STATUS\s+ENVS\s+POOL/);
    expect(table.stdout).toMatch(new RegExp(`^${c.node}\\s+Ready\\s+0\\s`, "m"));
    const json = JSON.parse((await c.cli(["node", "ls", "-o", "json"])).stdout) as Array<{
      name: string;
      state: string;
    }>;
    expect(json.map((n) => [n.name, n.state])).toEqual([[c.node, "NODE_STATE_READY"]]);
    expect((await c.cli(["node", "ls", "-q"])).stdout).toBe(`${c.node}\n`);
  }, 60_000);

  it("describe shows capacity and capabilities, the package cache among them", async () => {
    const d = await c.cli(["node", "describe", c.node, "-o", "json"]);
    expect(d.code).toBe(0);
    const n = JSON.parse(d.stdout) as {
      name: string;
      capacity: { poolSizeBytes: string };
      capabilities: Array<{ name: string; ok: boolean; detail: string }>;
    };
    expect(n.name).toBe(c.node);
    expect(Number(n.capacity.poolSizeBytes)).toBeGreaterThan(512 * 2 ** 20);
    const cache = n.capabilities.find((x) => x.name === "package-cache");
    expect(cache?.ok).toBe(true);
    expect(cache?.detail).toMatch(/^apt: 0\.0 MiB in 0 files, limit \d+\.\d MiB$/);
    const text = await c.cli(["node", "describe", c.node]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("package-cache");
  }, 60_000);

  it("cordon keeps new envs off the node and running ones on it; uncordon lets them in", async () => {
    expect((await c.cli(["base", "import", "bb", "--dir", c.rootfs])).code).toBe(0);
    expect((await c.cli(["env", "create", "nd-1", "--base", "bb"])).code).toBe(0);
    try {
      const cordon = await c.cli(["node", "cordon", c.node]);
      expect(cordon).toMatchObject({ code: 0, stdout: `node/${c.node} cordoned\n` });
      expect((await c.cli(["node", "ls"])).stdout).toMatch(
        new RegExp(`^${c.node}\\s+Ready,SchedulingDisabled\\s`, "m"),
      );
      // recorded, but no node takes it while the only one is cordoned
      const pending = await c.cli(["env", "create", "nd-2", "--base", "bb", "--no-wait"]);
      expect(pending.code).toBe(0);
      const d = await c.cli(["env", "describe", "nd-2", "-o", "json"]);
      const env = JSON.parse(d.stdout) as { status: { phase: string; reasons?: Array<{ reason: string }> } };
      expect(env.status.phase).toBe("ENV_PHASE_PENDING");
      expect(JSON.stringify(env.status.reasons ?? [])).toMatch(/cordon/i);
      expect((await c.cli(["env", "exec", "nd-1", "--", "echo", "still here"])).stdout).toBe("still here\n");
      const uncordon = await c.cli(["node", "uncordon", c.node]);
      expect(uncordon).toMatchObject({ code: 0, stdout: `node/${c.node} uncordoned\n` });
      // the pending env is placed once the node takes envs again
      const deadline = Date.now() + 60_000;
      let ls = "";
      while (Date.now() < deadline) {
        ls = (await c.cli(["env", "ls"])).stdout;
        if (/^nd-2\s+Running\s/m.test(ls)) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(ls).toMatch(/^nd-2\s+Running\s/m);
      expect((await c.cli(["env", "rm", "nd-2"])).code).toBe(0);
    } finally {
      await c.cli(["node", "uncordon", c.node]);
      await c.cli(["env", "rm", "nd-2"]);
      expect((await c.cli(["env", "rm", "nd-1"])).code).toBe(0);
    }
  }, 180_000);

  it("token prints a join token once; an unknown node is not found", async () => {
    const token = await c.cli(["node", "token", "--ttl", "10m", "-o", "json"]);
    expect(token.code).toBe(0);
    expect(JSON.stringify(JSON.parse(token.stdout))).toMatch(/token/i);
    for (const args of [
      ["node", "describe", "no-such-node"],
      ["node", "cordon", "no-such-node"],
    ]) {
      const r = await c.cli(args);
      expect(r.code, args.join(" ")).toBe(ExitCode.NOT_FOUND);
    }
    expect((await c.cli(["node", "describe", "Bad_Name"])).code).toBe(ExitCode.USAGE);
  }, 60_000);
});
