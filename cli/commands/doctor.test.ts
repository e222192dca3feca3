import { describe, expect, it } from "vitest";
import type { HostCheck } from "../../common/host-checks.js";
import { doctorCommand, renderDoctorTable } from "./doctor.js";

const checks: HostCheck[] = [
  {
    name: "btrfs",
    group: "binary",
    required: true,
    ok: false,
    detail: "btrfs not found on PATH",
    fix: "apt-get install btrfs-progs",
  },
  {
    name: "etcd",
    group: "binary",
    required: true,
    ok: true,
    detail: "/usr/bin/etcd",
    version: "3.4.23",
    fix: "",
  },
  {
    name: "debootstrap",
    group: "binary",
    required: false,
    ok: false,
    detail: "not found",
    fix: "apt-get install debootstrap",
  },
];

describe("doctor", () => {
  it("prints one aligned row per check with status, version and fix", () => {
    const lines = renderDoctorTable(checks).split("\n");
    expect(lines[0]).toMatch(/^CHECK\s+STATUS\s+VERSION\s+DETAIL\s+FIX$/);
    expect(lines[1]).toMatch(/^btrfs\s+MISSING\s+btrfs not found on PATH\s+apt-get install btrfs-progs$/);
    expect(lines[2]).toMatch(/^etcd\s+ok\s+3\.4\.23\s+\/usr\/bin\/etcd$/);
    expect(lines[3]).toMatch(/^debootstrap\s+warn\s/);
    expect(lines[1]!.indexOf("MISSING")).toBe(lines[0]!.indexOf("STATUS"));
    expect(lines.at(-2)).toMatch(/1 required check\(s\) failed/);
  });

  it("says so when everything required passed", () => {
    expect(renderDoctorTable(checks.slice(1))).toMatch(/all required checks passed \(1 optional missing\)/);
  });

  it("is a commander command with -o table|json", () => {
    const cmd = doctorCommand();
    expect(cmd.name()).toBe("doctor");
    expect(cmd.options.map((o) => o.long)).toEqual(expect.arrayContaining(["--output"]));
    cmd.exitOverride().configureOutput({ writeErr: () => undefined });
    expect(() => cmd.parse(["-o", "yaml"], { from: "user" })).toThrow(/yaml/);
  });
});
