/**
 * `protoctl layer …` end to end: the built CLI against a real `protoctl up`
 * (test/e2e/cli-cluster.ts). A shell recipe with a shipped file is added and
 * built on a base right after the base is imported (no wait), listed (table,
 * wide, JSON), described with its build, used by an env (the recipe's files
 * are in it), refused deletion while in use, and deleted; errors give the
 * documented exit codes and change nothing. The build's diff is checked on
 * the host, in the pool.
 */
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../cli/exit-codes.js";
import { type CliCluster, startCliCluster } from "./cli-cluster.js";

let c: CliCluster;

beforeAll(async () => {
  c = await startCliCluster("layer");
}, 400_000);

afterAll(async () => {
  if (c) expect(await c.close()).toEqual([]);
}, 200_000);

describe.sequential("protoctl layer", () => {
  it("add --build-on right after base import builds on that version and names it", async () => {
    expect((await c.cli(["base", "import", "bb", "--dir", c.rootfs])).code).toBe(0);
    const script = join(c.work, "tools.sh");
    await writeFile(script, "set -e\nmkdir -p /opt/tools\ncp motd /etc/motd\necho built > /opt/tools/mark\n");
    const motd = join(c.work, "motd");
    await writeFile(motd, "welcome to tools\n");
    const r = await c.cli(["layer", "add", "tools", "--script", script, "--file", motd, "--build-on", "bb"]);
    expect(r.stderr).toContain("Building layer tools");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("layer/tools built on bb@1\n");

    // on the host: the build's upper holds exactly the recipe's changes
    const builds = await readdir(join(c.poolMount(), "@overlay/tools"));
    const build = builds.find((b) => b.startsWith("bb@1."));
    expect(build).toBeDefined();
    const upper = join(c.poolMount(), "@overlay/tools", build!, "vol/upper");
    expect((await readdir(upper)).sort()).toEqual(["etc", "opt"]);
  }, 180_000);

  it("ls as a table, wide and JSON; describe lists the build", async () => {
    const table = await c.cli(["layer", "ls"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+KIND\s+BUILDS\s+AGE/);
    expect(table.stdout).toMatch(/^tools\s+SHELL\s+1\s/im);
    const wide = await c.cli(["layer", "ls", "-o", "wide"]);
    expect(wide.stdout).toMatch(/BUILT-ON/);
    expect(wide.stdout).toMatch(/bb@1/);
    const json = JSON.parse((await c.cli(["layer", "ls", "-o", "json"])).stdout) as Array<{
      name: string;
      builds: Array<{ base: string; node: string }>;
    }>;
    expect(json.map((l) => l.name)).toEqual(["tools"]);
    expect(json[0]!.builds.map((b) => b.base)).toEqual(["bb@1"]);
    expect((await c.cli(["layer", "ls", "-q"])).stdout).toBe("tools\n");
    const d = await c.cli(["layer", "describe", "tools", "-o", "json"]);
    expect(d.code).toBe(0);
    const layer = JSON.parse(d.stdout) as {
      name: string;
      builds: Array<{ base: string; sizeBytes?: string }>;
    };
    expect(layer.name).toBe("tools");
    expect(layer.builds).toHaveLength(1);
    expect(layer.builds[0]!.base).toBe("bb@1");
    const text = await c.cli(["layer", "describe", "tools"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/bb@1/);
  }, 60_000);

  it("an env on the layer sees the recipe's work; the layer cannot go while the env uses it", async () => {
    const create = await c.cli(["env", "create", "lt-1", "--base", "bb", "--layer", "tools"]);
    expect(create.stderr).toBe("");
    expect(create.code).toBe(0);
    try {
      const mark = await c.cli(["env", "exec", "lt-1", "--", "cat", "/opt/tools/mark", "/etc/motd"]);
      expect(mark).toEqual({ code: 0, stdout: "built\nwelcome to tools\n", stderr: "" });
      const busy = await c.cli(["layer", "rm", "tools"]);
      expect(busy.code).toBe(ExitCode.PRECONDITION);
      expect(busy.stderr).toMatch(/lt-1/);
      expect((await c.cli(["layer", "ls", "-q"])).stdout).toBe("tools\n");
    } finally {
      expect((await c.cli(["env", "rm", "lt-1"])).code).toBe(0);
    }
  }, 120_000);

  it("errors: a failing recipe, a missing script, an unknown layer; nothing changes", async () => {
    const bad = join(c.work, "bad.sh");
    await writeFile(bad, "echo about to fail >&2\nexit 3\n");
    const failed = await c.cli(["layer", "add", "broken", "--script", bad, "--build-on", "bb"]);
    expect(failed.code).toBe(ExitCode.FAILURE);
    expect(failed.stderr).toMatch(/about to fail/);
    expect(failed.stderr).toMatch(/exit 3/);
    const missing = await c.cli(["layer", "add", "nofile", "--script", join(c.work, "nope.sh")]);
    expect(missing.code).toBe(ExitCode.USAGE);
    expect(missing.stderr).toMatch(/cannot read/);
    const unknown = await c.cli(["layer", "describe", "no-such-layer"]);
    expect(unknown.code).toBe(ExitCode.NOT_FOUND);
    const both = await c.cli(["layer", "add", "x", "--script", bad, "--playbook", bad]);
    expect(both.code).toBe(ExitCode.USAGE);
    const names = (await c.cli(["layer", "ls", "-q"])).stdout.split("\n").filter(Boolean);
    expect(names).not.toContain("nofile");
    expect(names).not.toContain("x");
    expect((await readdir(join(c.poolMount(), "@overlay"))).filter((e) => e.startsWith(".tmp-"))).toEqual([]);
  }, 120_000);

  it("rm deletes the layer and its builds; a second rm is not found", async () => {
    for (const n of (await c.cli(["layer", "ls", "-q"])).stdout.split("\n").filter((x) => x && x !== "tools"))
      await c.cli(["layer", "rm", n]);
    const rm = await c.cli(["layer", "rm", "tools"]);
    expect(rm).toMatchObject({ code: 0, stdout: "layer/tools deleted\n" });
    expect((await c.cli(["layer", "ls", "-q"])).stdout).toBe("");
    expect((await c.cli(["layer", "rm", "tools"])).code).toBe(ExitCode.NOT_FOUND);
    const deadline = Date.now() + 30_000;
    // the agent removes the build when the controller tells it: eventually, not in the same call
    while ((await readdir(join(c.poolMount(), "@overlay"))).includes("tools") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    expect(await readdir(join(c.poolMount(), "@overlay"))).not.toContain("tools");
  }, 90_000);
});
