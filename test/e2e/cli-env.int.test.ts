/**
 * `protoctl env …` end to end beyond create/exec/ls/stop/rm (cli.int.test.ts):
 * the built CLI against a real `protoctl up` (test/e2e/cli-cluster.ts).
 * roll (the env runs on the base's new version and sees its new file),
 * snapshot (a new base holding the env's changes), stop/start (the
 * filesystem survives; --no-start then start), cp in both directions (modes
 * and symlinks kept, into a stopped env too), --ttl and extend (and an env
 * that expires is deleted), logs content (--tail, -f until a signal). Error
 * cases give the documented exit codes and change nothing.
 */

import { existsSync } from "node:fs";
import { lstat, mkdir, readFile, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../cli/exit-codes.js";
import { type CliCluster, startCliCluster } from "./cli-cluster.js";

let c: CliCluster;

beforeAll(async () => {
  c = await startCliCluster("env", { base: "bb" });
}, 400_000);

afterAll(async () => {
  if (c) expect(await c.close()).toEqual([]);
}, 200_000);

interface EnvJson {
  spec: { name: string; base: { name: string; version?: number }; expiresMs?: number };
  status: { phase: string; node: string; baseVersion: number };
}

async function describeEnv(name: string): Promise<EnvJson> {
  const d = await c.cli(["env", "describe", name, "-o", "json"]);
  expect(d.code, d.stderr).toBe(0);
  return JSON.parse(d.stdout) as EnvJson;
}

async function envNames(): Promise<string[]> {
  return (await c.cli(["env", "ls", "-q"])).stdout.split("\n").filter(Boolean);
}

async function baseNames(): Promise<string[]> {
  return (await c.cli(["base", "ls", "-q"])).stdout.split("\n").filter(Boolean);
}

/** Appends lines to the env's console (PID 1's stdout is the console log). */
async function say(env: string, ...lines: string[]): Promise<void> {
  const script = lines.map((l) => `echo ${l} >> /proc/1/fd/1`).join("; ");
  expect((await c.cli(["env", "exec", env, "--", "sh", "-c", script])).code).toBe(0);
}

describe.sequential("protoctl env", () => {
  it("roll recreates the env on the base's new version, which has the update's file", async () => {
    expect((await c.cli(["env", "create", "ro-1", "--base", "bb"])).code).toBe(0);
    try {
      expect((await c.cli(["env", "exec", "ro-1", "--", "cat", "/etc/v2"])).code).not.toBe(0);
      const up = await c.cli(["base", "update", "bb", "--", "/bin/sh", "-c", "echo version two > /etc/v2"]);
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout).toBe("base/bb@2 sealed (from bb@1)\n");
      // the env stays on its version until rolled
      expect((await describeEnv("ro-1")).status.baseVersion).toBe(1);

      const roll = await c.cli(["env", "roll", "ro-1"]);
      expect(roll.code, roll.stderr).toBe(0);
      expect(roll.stdout).toBe("env/ro-1 rolled to bb@2 (Running)\n");
      const env = await describeEnv("ro-1");
      expect(env.status).toMatchObject({ phase: "ENV_PHASE_RUNNING", baseVersion: 2, node: c.node });
      expect((await c.cli(["env", "ls"])).stdout).toMatch(/^ro-1\s+Running\s+bb@2\s/m);
      const cat = await c.cli(["env", "exec", "ro-1", "--", "cat", "/etc/v2"]);
      expect(cat).toEqual({ code: 0, stdout: "version two\n", stderr: "" });

      // errors: an unknown env, a version the base does not have; the env stays as it was
      expect((await c.cli(["env", "roll", "no-such-env"])).code).toBe(ExitCode.NOT_FOUND);
      const bad = await c.cli(["env", "roll", "ro-1", "--base-version", "9"]);
      expect(bad.code).toBe(ExitCode.NOT_FOUND);
      expect(bad.stderr).toMatch(/bb@9/);
      expect((await describeEnv("ro-1")).status).toMatchObject({
        phase: "ENV_PHASE_RUNNING",
        baseVersion: 2,
      });
    } finally {
      expect((await c.cli(["env", "rm", "ro-1"])).code).toBe(0);
    }
  }, 180_000);

  it("snapshot seals the env's changes as a new base that a new env starts from", async () => {
    expect((await c.cli(["env", "create", "sn-1", "--base", "bb"])).code).toBe(0);
    try {
      await c.cli(["env", "exec", "sn-1", "--", "sh", "-c", "echo golden > /root/made-here"]);
      const snap = await c.cli(["env", "snapshot", "sn-1", "--as-base", "golden"]);
      expect(snap.code, snap.stderr).toBe(0);
      expect(snap.stdout).toBe("base/golden@1 created from env/sn-1\n");
      const bases = JSON.parse((await c.cli(["base", "ls", "-o", "json"])).stdout) as Array<{
        name: string;
        latest: number;
        versions: Array<{ source: string; nodes: string[] }>;
      }>;
      const golden = bases.find((b) => b.name === "golden");
      expect(golden).toMatchObject({ latest: 1 });
      expect(golden!.versions[0]).toMatchObject({ source: "env:sn-1", nodes: [c.node] });

      // usable by the next command: an env from it has the file
      expect((await c.cli(["env", "create", "sn-2", "--base", "golden"])).code).toBe(0);
      const cat = await c.cli(["env", "exec", "sn-2", "--", "cat", "/root/made-here"]);
      expect(cat).toEqual({ code: 0, stdout: "golden\n", stderr: "" });
      expect((await c.cli(["env", "rm", "sn-2"])).code).toBe(0);

      // errors: no --as-base (usage), an unknown env; no base appears
      const before = await baseNames();
      expect((await c.cli(["env", "snapshot", "sn-1"])).code).toBe(ExitCode.USAGE);
      expect((await c.cli(["env", "snapshot", "no-such-env", "--as-base", "ghost"])).code).toBe(
        ExitCode.NOT_FOUND,
      );
      expect((await c.cli(["env", "snapshot", "sn-1", "--as-base", "Bad_Name"])).code).toBe(ExitCode.USAGE);
      expect(await baseNames()).toEqual(before);
    } finally {
      await c.cli(["env", "rm", "sn-2"]);
      expect((await c.cli(["env", "rm", "sn-1"])).code).toBe(0);
      expect((await c.cli(["base", "rm", "golden"])).code).toBe(0);
    }
  }, 180_000);

  it("stop and start keep the filesystem; --no-start then start; start of unknown is not found", async () => {
    expect((await c.cli(["env", "create", "st-1", "--base", "bb"])).code).toBe(0);
    const created = await c.cli(["env", "create", "st-2", "--base", "bb", "--no-start"]);
    try {
      expect(created.code, created.stderr).toBe(0);
      expect((await c.cli(["env", "ls"])).stdout).toMatch(/^st-2\s+Created\s/m);
      await c.cli(["env", "exec", "st-1", "--", "sh", "-c", "echo kept > /root/state"]);
      expect((await c.cli(["env", "stop", "st-1"])).stdout).toBe("env/st-1 stopped\n");
      expect((await describeEnv("st-1")).status.phase).toBe("ENV_PHASE_STOPPED");
      expect((await c.cli(["env", "exec", "st-1", "--", "true"])).code).toBe(ExitCode.PRECONDITION);

      const start = await c.cli(["env", "start", "st-1", "st-2"]);
      expect(start.code, start.stderr).toBe(0);
      expect(start.stdout).toBe("env/st-1 running\nenv/st-2 running\n");
      const ls = (await c.cli(["env", "ls"])).stdout;
      expect(ls).toMatch(/^st-1\s+Running\s/m);
      expect(ls).toMatch(/^st-2\s+Running\s/m);
      expect((await c.cli(["env", "exec", "st-1", "--", "cat", "/root/state"])).stdout).toBe("kept\n");
      // starting a running env is a no-op
      expect(await c.cli(["env", "start", "st-1"])).toMatchObject({ code: 0, stdout: "env/st-1 running\n" });
      expect((await c.cli(["env", "start", "no-such-env"])).code).toBe(ExitCode.NOT_FOUND);
    } finally {
      expect((await c.cli(["env", "rm", "st-1", "st-2"])).code).toBe(0);
    }
    expect(await envNames()).toEqual([]);
  }, 180_000);

  it("cp copies a tree in and a file out with modes and symlinks kept, also into a stopped env", async () => {
    const site = join(c.work, "site");
    await mkdir(join(site, "sub"), { recursive: true });
    await writeFile(join(site, "index.html"), "<h1>hi</h1>\n");
    await writeFile(join(site, "sub/run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o751 });
    await symlink("index.html", join(site, "home.html"));
    expect((await c.cli(["env", "create", "cp-1", "--base", "bb"])).code).toBe(0);
    try {
      const into = await c.cli(["env", "cp", site, "cp-1:/root/site"]);
      expect(into.code, into.stderr).toBe(0);
      expect(into.stdout).toBe("copied 5 entries (31 bytes)\n");
      const inside = await c.cli([
        "env",
        "exec",
        "cp-1",
        "--",
        "sh",
        "-c",
        "cat /root/site/index.html; stat -c '%a %U' /root/site/sub/run.sh; readlink /root/site/home.html; /root/site/sub/run.sh",
      ]);
      expect(inside).toEqual({ code: 0, stdout: "<h1>hi</h1>\n751 root\nindex.html\nran\n", stderr: "" });

      // out: a file the env wrote, and the tree back
      await c.cli(["env", "exec", "cp-1", "--", "sh", "-c", "echo from inside > /root/out.txt"]);
      const outFile = join(c.work, "out.txt");
      expect((await c.cli(["env", "cp", "cp-1:/root/out.txt", outFile])).code).toBe(0);
      expect(await readFile(outFile, "utf8")).toBe("from inside\n");
      const back = join(c.work, "back");
      expect((await c.cli(["env", "cp", "cp-1:/root/site", back])).code).toBe(0);
      expect((await stat(join(back, "sub/run.sh"))).mode & 0o777).toBe(0o751);
      expect((await lstat(join(back, "home.html"))).isSymbolicLink()).toBe(true);
      expect(await readlink(join(back, "home.html"))).toBe("index.html");

      // a stopped env: the copy lands in its filesystem, seen once started
      expect((await c.cli(["env", "stop", "cp-1"])).code).toBe(0);
      expect((await c.cli(["env", "cp", outFile, "cp-1:/root/while-stopped"])).code).toBe(0);
      expect((await c.cli(["env", "start", "cp-1"])).code).toBe(0);
      const seen = await c.cli(["env", "exec", "cp-1", "--", "cat", "/root/while-stopped"]);
      expect(seen.stdout).toBe("from inside\n");

      // errors: an unknown env, a missing path in the env, two local sides, a file as parent dir
      const missing = join(c.work, "never");
      expect((await c.cli(["env", "cp", "no-such-env:/etc/hostname", missing])).code).toBe(
        ExitCode.NOT_FOUND,
      );
      const nopath = await c.cli(["env", "cp", "cp-1:/no/such/file", missing]);
      expect(nopath.code).not.toBe(0);
      expect(nopath.stderr).toMatch(/^error: \/no\/such.* does not exist\n/);
      expect(existsSync(missing)).toBe(false);
      expect((await c.cli(["env", "cp", outFile, missing])).code).toBe(ExitCode.USAGE);
      const notDir = await c.cli(["env", "cp", outFile, "cp-1:/etc/passwd/x"]);
      expect(notDir.code).toBe(ExitCode.PRECONDITION);
      expect(notDir.stderr).toMatch(/^error: .*\/etc\/passwd.* is not a directory\n/);
      expect(notDir.stderr).not.toMatch(/\n\s+at /);
      const passwd = await c.cli(["env", "exec", "cp-1", "--", "head", "-c", "5", "/etc/passwd"]);
      expect(passwd.stdout).toBe("root:");
    } finally {
      expect((await c.cli(["env", "rm", "cp-1"])).code).toBe(0);
    }
  }, 180_000);

  it("--ttl shows in ls, extend pushes the expiry back, an expired env is deleted", async () => {
    expect((await c.cli(["env", "create", "tt-1", "--base", "bb", "--ttl", "30m"])).code).toBe(0);
    try {
      expect((await c.cli(["env", "ls"])).stdout).toMatch(
        /^tt-1\s+Running\s+bb@\d\s+\S+\s+\S+\s+(29m\d+s|30m)\n/m,
      );
      const before = Number((await describeEnv("tt-1")).spec.expiresMs);
      const ext = await c.cli(["env", "extend", "tt-1", "1h"]);
      expect(ext.code, ext.stderr).toBe(0);
      expect(ext.stdout).toMatch(/^env\/tt-1 expires in 1h(29|30)m\n$/);
      const after = Number((await describeEnv("tt-1")).spec.expiresMs);
      expect(after - before).toBe(3_600_000);
      expect((await c.cli(["env", "ls"])).stdout).toMatch(/^tt-1\s.*\s1h(29|30)m\n/m);

      // errors change nothing
      const bad = await c.cli(["env", "extend", "tt-1", "soon"]);
      expect(bad.code).toBe(ExitCode.USAGE);
      expect(bad.stderr).toContain('invalid duration "soon"');
      expect((await c.cli(["env", "extend", "no-such-env", "1h"])).code).toBe(ExitCode.NOT_FOUND);
      expect((await c.cli(["env", "create", "tt-bad", "--base", "bb", "--ttl", "forever"])).code).toBe(
        ExitCode.USAGE,
      );
      expect(Number((await describeEnv("tt-1")).spec.expiresMs)).toBe(after);
      expect(await envNames()).toEqual(["tt-1"]);
    } finally {
      expect((await c.cli(["env", "rm", "tt-1"])).code).toBe(0);
    }
    expect((await c.cli(["env", "create", "tt-2", "--base", "bb"])).code).toBe(0);
    try {
      const none = await c.cli(["env", "extend", "tt-2", "1h"]);
      expect(none.code).toBe(ExitCode.PRECONDITION);
      expect(none.stderr).toMatch(/no ttl/);
    } finally {
      expect((await c.cli(["env", "rm", "tt-2"])).code).toBe(0);
    }

    expect((await c.cli(["env", "create", "tt-3", "--base", "bb", "--ttl", "2s"])).code).toBe(0);
    const deadline = Date.now() + 60_000;
    while ((await envNames()).includes("tt-3") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 500));
    expect(await envNames()).toEqual([]);
    expect((await c.cli(["env", "describe", "tt-3"])).code).toBe(ExitCode.NOT_FOUND);
  }, 180_000);

  it("logs prints the console's lines, --tail the last ones, -f follows until interrupted", async () => {
    expect((await c.cli(["env", "create", "lg-1", "--base", "bb"])).code).toBe(0);
    try {
      await say("lg-1", "line-1", "line-2", "line-3");
      const all = await c.cli(["env", "logs", "lg-1"]);
      expect(all.code, all.stderr).toBe(0);
      expect(all.stdout).toBe("line-1\nline-2\nline-3\n");
      expect((await c.cli(["env", "logs", "lg-1", "--tail", "2"])).stdout).toBe("line-2\nline-3\n");

      const follow = c.spawnCli(["env", "logs", "lg-1", "-f", "--tail", "1"]);
      let seen = "";
      follow.stdout.on("data", (d: Buffer) => (seen += String(d)));
      const waitFor = async (text: string) => {
        const deadline = Date.now() + 30_000;
        while (!seen.includes(text) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        expect(seen).toContain(text);
      };
      await waitFor("line-3\n");
      await say("lg-1", "line-4");
      await waitFor("line-4\n");
      follow.kill("SIGINT");
      const done = await follow;
      expect(seen).toBe("line-3\nline-4\n");
      // Ctrl-C ends it as it ends any command: by the signal (or exit 130 if it catches it)
      expect(done.signal === "SIGINT" || done.exitCode === ExitCode.INTERRUPTED, JSON.stringify(done)).toBe(
        true,
      );
      expect(String(done.stderr)).toBe("");

      expect((await c.cli(["env", "logs", "no-such-env"])).code).toBe(ExitCode.NOT_FOUND);
      expect((await c.cli(["env", "logs", "lg-1", "--tail", "many"])).code).toBe(ExitCode.USAGE);
    } finally {
      expect((await c.cli(["env", "rm", "lg-1"])).code).toBe(0);
    }
  }, 120_000);
});
