import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BINARIES, type HostCheck, runHostChecks } from "../../common/host-checks.js";
import { findExecutable } from "../../common/tools.js";
import { runDoctor } from "./doctor.js";

async function doctor(opts: Parameters<typeof runDoctor>[0]): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await runDoctor({ ...opts, write: (t) => (out += t) });
  return { code, out };
}

describe("protoctl doctor on this machine", () => {
  it("passes every check and exits 0", async () => {
    const { code, out } = await doctor({ output: "json" });
    const { ok, checks } = JSON.parse(out) as { ok: boolean; checks: HostCheck[] };
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(ok).toBe(true);
    expect(code).toBe(0);
    const names = checks.map((c) => c.name);
    for (const n of [
      "fs:btrfs",
      "fs:overlay",
      "loop-control",
      "fuse",
      "nbd-attach",
      "vxlan",
      "root",
      "memory",
    ]) {
      expect(names).toContain(n);
    }
    expect(checks.find((c) => c.name === "btrfs")?.version).toMatch(/^\d+\.\d+/);
    expect(checks.find((c) => c.name === "etcd")?.version).toMatch(/^3\./);
  });

  it("prints a table with one row per check", async () => {
    const { code, out } = await doctor({ output: "table" });
    expect(code).toBe(0);
    const lines = out.trim().split("\n");
    expect(lines[0]).toMatch(/^CHECK\s+STATUS/);
    expect(lines.filter((l) => /^\S+\s+ok\s/.test(l)).length).toBeGreaterThanOrEqual(20);
    expect(out).toMatch(/all required checks passed/);
  });
});

describe("protoctl doctor with btrfs missing from PATH", () => {
  let dir = "";
  beforeAll(async () => {
    // A PATH of symlinks to every tool doctor looks for, except btrfs.
    dir = await mkdtemp(join(tmpdir(), "protoctl-nobtrfs-"));
    const names = [...BINARIES.flatMap((b) => b.candidates), "modprobe"].filter((n) => n !== "btrfs");
    for (const n of names) {
      const real = await findExecutable(n, process.env.PATH);
      if (real) await symlink(real, join(dir, n));
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reports btrfs missing with its package, keeps the rest ok, and exits 1", async () => {
    const { code, out } = await doctor({ output: "table", env: { ...process.env, PATH: dir } });
    expect(code).toBe(1);
    const row = out.split("\n").find((l) => l.startsWith("btrfs "));
    expect(row).toMatch(/^btrfs\s+MISSING\s+btrfs not found on PATH.*apt-get install btrfs-progs$/);
    expect(out).toMatch(/^mkfs\.btrfs\s+ok\s/m);
    expect(out).toMatch(/1 required check\(s\) failed/);
  });

  it("honours the PATH of the process itself", async () => {
    const saved = process.env.PATH;
    process.env.PATH = dir;
    try {
      const checks = await runHostChecks();
      expect(checks.filter((c) => !c.ok).map((c) => [c.name, c.fix])).toEqual([
        ["btrfs", "apt-get install btrfs-progs"],
      ]);
      const { code, out } = await doctor({ output: "json" });
      expect(code).toBe(1);
      expect(JSON.parse(out).ok).toBe(false);
    } finally {
      process.env.PATH = saved;
    }
  });
});
