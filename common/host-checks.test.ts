import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BINARIES,
  parseCapEff,
  parseMemAvailable,
  parseProcFilesystems,
  parseVersion,
  requiredOk,
  runHostChecks,
  toCapabilities,
} from "./host-checks.js";
import { findExecutable } from "./tools.js";

// Captured on Debian 12.
const VERSIONS: Array<[string, string, RegExp | undefined, string]> = [
  [
    "btrfs",
    "btrfs-progs v6.2\n-EXPERIMENTAL -INJECT -STATIC +LZO +ZSTD +UDEV +FSVERITY +ZONED CRYPTO=builtin\n",
    undefined,
    "6.2",
  ],
  ["systemd-nspawn", "systemd 252 (252.39-1~deb12u2)\n+PAM +AUDIT", /systemd (\d+)/, "252"],
  ["losetup", "losetup from util-linux 2.38.1\n", undefined, "2.38.1"],
  [
    "qemu-nbd",
    "qemu-nbd 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nWritten by Anthony Liguori.\n",
    undefined,
    "7.2.22",
  ],
  ["ip", "ip utility, iproute2-6.1.0, libbpf 1.1.2\n", undefined, "6.1.0"],
  [
    "etcd",
    "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\n",
    undefined,
    "3.4.23",
  ],
  ["debootstrap", "debootstrap 1.0.128+nmu2+deb12u2\n", undefined, "1.0.128+nmu2+deb12u2"],
  ["busybox", "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n", undefined, "1.35.0"],
];

describe("parsers", () => {
  it.each(VERSIONS)("reads the version of %s", (_name, text, pattern, want) => {
    expect(parseVersion(text, pattern)).toBe(want);
  });

  it("reads /proc/filesystems", () => {
    const fs = parseProcFilesystems("nodev\tsysfs\nnodev\toverlay\n\tbtrfs\n\text4\n");
    expect([...fs]).toEqual(["sysfs", "overlay", "btrfs", "ext4"]);
  });

  it("reads MemAvailable and CapEff", () => {
    expect(parseMemAvailable("MemTotal: 24000000 kB\nMemAvailable:    2048 kB\n")).toBe(2048 * 1024);
    expect(parseMemAvailable("MemTotal: 1 kB\n")).toBeUndefined();
    expect(parseCapEff("Name:\tx\nCapEff:\t000001ffffffffff\n")).toBe(0x1ffffffffffn);
    expect(parseCapEff("")).toBe(0n);
  });

  it("sums up required checks and exposes capabilities", () => {
    const c = (name: string, required: boolean, ok: boolean) => ({
      name,
      group: "binary" as const,
      required,
      ok,
      detail: "/usr/bin/x",
      fix: "",
      version: ok ? "1.0" : undefined,
    });
    expect(requiredOk([c("a", true, true), c("b", false, false)])).toBe(true);
    expect(requiredOk([c("a", true, false)])).toBe(false);
    expect(toCapabilities([c("a", true, true)])).toEqual([{ name: "a", ok: true, detail: "1.0 /usr/bin/x" }]);
  });
});

describe("on a fake host (no privileges needed)", () => {
  let root = "";
  let bin = "";
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "protoctl-hostchecks-"));
    bin = join(root, "bin");
    await mkdir(join(root, "proc/self"), { recursive: true });
    await mkdir(join(root, "dev"), { recursive: true });
    await mkdir(bin);
    await writeFile(join(root, "proc/filesystems"), "nodev\toverlay\n\text4\n");
    await writeFile(join(root, "proc/meminfo"), "MemAvailable:   524288 kB\n");
    await writeFile(join(root, "proc/self/status"), "CapEff:\t0000000000000000\n");
    await writeFile(join(root, "dev/loop-control"), "");
    // Every tool but btrfs, each printing a version; nbdfuse stands in for /dev/nbd*.
    for (const spec of BINARIES) {
      for (const name of spec.candidates) {
        if (name === "btrfs") continue;
        await writeFile(join(bin, name), "#!/bin/sh\necho 'tool 9.8.7'\n");
        await chmod(join(bin, name), 0o755);
      }
    }
    await writeFile(join(bin, "not-executable"), "");
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("finds executables on the given PATH only", async () => {
    expect(await findExecutable("ip", `/nonexistent:${bin}`)).toBe(join(bin, "ip"));
    expect(await findExecutable("btrfs", bin)).toBeUndefined();
    expect(await findExecutable("not-executable", bin)).toBeUndefined();
    expect(await findExecutable("ip", "")).toBeUndefined();
  });

  it("reports each missing piece with its fix", async () => {
    const checks = await runHostChecks({
      root,
      env: { ...process.env, PATH: bin },
      modprobe: false,
      probeVxlan: false,
      minPoolMemoryBytes: 1024 ** 3,
    });
    const by = new Map(checks.map((c) => [c.name, c]));
    expect(by.get("btrfs")).toMatchObject({ ok: false, required: true, fix: "apt-get install btrfs-progs" });
    expect(by.get("mkfs.btrfs")).toMatchObject({
      ok: true,
      version: "9.8.7",
      detail: join(bin, "mkfs.btrfs"),
    });
    expect(by.get("btrfstune")).toMatchObject({ ok: true, version: undefined });
    expect(by.get("fs:btrfs")).toMatchObject({ ok: false, fix: expect.stringMatching(/^modprobe btrfs/) });
    expect(by.get("fs:overlay")).toMatchObject({ ok: true });
    expect(by.get("loop-control")).toMatchObject({ ok: true });
    expect(by.get("fuse")).toMatchObject({ ok: false, fix: expect.stringContaining("fuse") });
    expect(by.get("nbd-attach")).toMatchObject({ ok: true, detail: "no /dev/nbd*: nbdfuse will be used" });
    expect(by.get("capabilities")).toMatchObject({
      ok: false,
      detail: expect.stringContaining("CAP_SYS_ADMIN"),
    });
    expect(by.get("memory")).toMatchObject({
      ok: false,
      detail: "512 MiB available (tmpfs pool needs 1.0 GiB)",
    });
    expect(requiredOk(checks)).toBe(false);
    for (const c of checks) if (!c.ok) expect(c.fix).not.toBe("");
  });

  it("points at modprobe when the kernel ships nbd.ko unloaded", async () => {
    const modDir = join(root, "lib/modules", release(), "kernel/drivers/block");
    await mkdir(modDir, { recursive: true });
    await writeFile(join(modDir, "nbd.ko.xz"), "");
    try {
      const checks = await runHostChecks({
        root,
        env: { ...process.env, PATH: bin },
        modprobe: false,
        probeVxlan: false,
        minPoolMemoryBytes: 1024 ** 3,
      });
      const nbd = checks.find((c) => c.name === "nbd-attach");
      expect(nbd).toMatchObject({
        ok: true,
        detail: "no /dev/nbd*: nbdfuse will be used (`modprobe nbd` for the kernel client)",
      });
    } finally {
      await rm(join(root, "lib"), { recursive: true, force: true });
    }
  });
});
