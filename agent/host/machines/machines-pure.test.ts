import { describe, expect, it } from "vitest";
import { envCgroupSet, limitWrites, parseProcCgroup } from "./cgroups.js";
import { enterArgs, exitCodeOf } from "./exec-session.js";
import { tailOffset } from "./log-follow.js";
import { MACHINE_NAME_MAX, machineName, vethHostName } from "./naming.js";
import { COMMAND_MODE_INIT, nspawnArgs } from "./nspawn-args.js";
import { parseStat } from "./proc.js";
import { hostIdOfRoot } from "./userns.js";

describe("naming", () => {
  it("makes machine names unique per node and within 64 chars", () => {
    expect(machineName("n1", "web")).toMatch(/^web-[0-9a-f]{8}$/);
    expect(machineName("n1", "web")).not.toBe(machineName("n2", "web"));
    const long = "a".repeat(63);
    expect(machineName("n1", long).length).toBeLessThanOrEqual(MACHINE_NAME_MAX);
    expect(machineName("n1", long)).not.toBe(machineName("n1", `${"a".repeat(62)}b`));
  });
  it("keeps veth names within 15 chars", () => {
    expect(vethHostName("node", "x".repeat(63))).toMatch(/^vp[0-9a-f]{12}$/);
  });
});

describe("cgroups", () => {
  it("parses /proc/self/cgroup of a hybrid host", () => {
    const m = parseProcCgroup("9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/\n");
    expect(m).toEqual({ systemd: "/", memory: "/process_api/abc", cpu: "/x", cpuacct: "/x", unified: "/" });
  });
  it("places env cgroups under protoctl/<node>/<env>", () => {
    expect(envCgroupSet({ memory: "/sys/fs/cgroup/memory/a" }, "n", "e").dirs).toEqual({
      memory: "/sys/fs/cgroup/memory/a/protoctl/n/e",
    });
  });
  it("writes limits in a valid order", () => {
    expect(limitWrites({ memoryBytes: 1024, cpus: 1.5, pids: 20 }, true)).toEqual([
      ["memory", "memory.limit_in_bytes", "1024"],
      ["memory", "memory.memsw.limit_in_bytes", "1024"],
      ["cpu", "cpu.cfs_period_us", "100000"],
      ["cpu", "cpu.cfs_quota_us", "150000"],
      ["pids", "pids.max", "20"],
    ]);
    expect(limitWrites({}, true)).toEqual([]);
  });
});

describe("nspawn args", () => {
  const base = { name: "e1", rootDir: "/p/@env/e1", boot: false, limits: {}, env: { A: "1" } };
  it("command mode: pipe console, SIGTERM, fixed init, private network by default", () => {
    const a = nspawnArgs({ spec: { ...base, network: { mode: "none" } }, machine: "e1-x" });
    expect(a).toContain("--register=no");
    expect(a).toContain("--keep-unit");
    expect(a).toContain("--private-network");
    expect(a).toContain("--setenv=A=1");
    expect(a.slice(-4)).toEqual(["--", "/bin/sh", "-c", COMMAND_MODE_INIT]);
    // unprivileged unless asked
    expect(a).toContain("--private-users=pick");
    expect(a).toContain("--private-users-ownership=map");
  });
  it("privileged machines get no user namespace", () => {
    const a = nspawnArgs({ spec: { ...base, privileged: true, network: { mode: "none" } }, machine: "m" });
    expect(a.some((w) => w.startsWith("--private-users"))).toBe(false);
  });
  it("boot mode and veth networks", () => {
    const a = nspawnArgs({
      spec: {
        ...base,
        boot: true,
        network: { mode: "private", ports: [{ protocol: "tcp", hostPort: 8080, containerPort: 80 }] },
      },
      machine: "m",
      vethHost: "vp123",
    });
    expect(a).toContain("--boot");
    expect(a).toContain("--network-veth-extra=vp123:host0");
    expect(a).toContain("--port=tcp:8080:80");
    expect(a).not.toContain("--private-network");
  });
  it("rejects bad env keys", () => {
    expect(() =>
      nspawnArgs({ spec: { ...base, env: { "A B": "x" }, network: { mode: "host" } }, machine: "m" }),
    ).toThrow();
  });
});

describe("exec argv", () => {
  it("passes user data only as separate argv entries to protoctl-enter", () => {
    const plan = {
      helper: "/x/protoctl-enter",
      leaderPid: 42,
      filterFile: "/state/e.seccomp",
      procsFiles: ["/cg/a/cgroup.procs", "/cg/b/cgroup.procs"],
      command: ["echo", "$(rm -rf /)"],
      env: { X: "a b" },
      workdir: "/srv",
      tty: false,
      rows: 0,
      cols: 0,
      user: { uid: 1000, gid: 100 },
    };
    const argv = enterArgs(plan, true);
    expect(argv.slice(0, 5)).toEqual(["exec", "-t", "42", "-f", "/state/e.seccomp"]);
    expect(argv.slice(5, 9)).toEqual(["-c", "/cg/a/cgroup.procs", "-c", "/cg/b/cgroup.procs"]);
    expect(argv.slice(9, 15)).toEqual(["-u", "1000", "-g", "100", "-w", "/srv"]);
    expect(argv.slice(15)).toEqual(["-e", "X=a b", "--", "echo", "$(rm -rf /)"]);
    // a slot has joined already: no -c; root and "/" need no options
    const slot = enterArgs({ ...plan, user: undefined, workdir: "/" }, false);
    expect(slot).not.toContain("-c");
    expect(slot.slice(5, 8)).toEqual(["-e", "X=a b", "--"]);
  });
  it("finds the host id of container root in a uid_map", () => {
    expect(hostIdOfRoot("         0  210239488      65536\n")).toBe(210239488);
    expect(hostIdOfRoot("         0          0 4294967295\n")).toBe(0);
    expect(hostIdOfRoot("      1000       5000          1\n")).toBeUndefined();
  });
  it("maps signals to 128+N", () => {
    expect(exitCodeOf(null, "SIGKILL")).toBe(137);
    expect(exitCodeOf(3, null)).toBe(3);
    expect(exitCodeOf(0, 15)).toBe(143);
  });
});

describe("proc and logs", () => {
  it("parses /proc/<pid>/stat with spaces in the name", () => {
    const stat = "123 (a b) S 1 123 123 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
    expect(parseStat(stat)).toMatchObject({ state: "S", ppid: 1, startTime: 98765 });
  });
  it("finds where the last N lines start", () => {
    const b = Buffer.from("a\nb\nc\n");
    expect(tailOffset(b, 2)).toBe(2);
    expect(tailOffset(b, 5)).toBe(0);
    expect(tailOffset(Buffer.from("a\nb"), 1)).toBe(2);
  });
});

describe("links", () => {
  it("plans one veth per attachment: eth0, eth1… inside, unique host names, one default route", async () => {
    const { planLinks } = await import("./links.js");
    const links = planLinks("n1", "web", {
      mode: "bridge",
      links: [
        { mode: "bridge", bridge: "lab-a", address: "10.0.0.2/24", gateway: "10.0.0.1" },
        { mode: "bridge", bridge: "lab-b", address: "10.1.0.2/24", gateway: "10.1.0.1" },
      ],
    });
    expect(links.map((l) => [l.ifname, l.defaultRoute])).toEqual([
      ["eth0", true],
      ["eth1", false],
    ]);
    expect(links[0]!.hostIf).toBe(vethHostName("n1", "web"));
    expect(links[1]!.hostIf).not.toBe(links[0]!.hostIf);
    expect(planLinks("n1", "web", { mode: "private", address: "10.2.0.2/24" }).map((l) => l.ifname)).toEqual([
      "host0",
    ]);
    expect(() => planLinks("n1", "web", { mode: "bridge", links: [{ mode: "bridge" }] })).toThrow(
      /bridge name/,
    );
    const args = nspawnArgs({
      spec: { name: "web", rootDir: "/r", boot: false, limits: {}, env: {}, network: { mode: "bridge" } },
      machine: "m",
      links,
    });
    expect(args.filter((a) => a.startsWith("--network-veth-extra="))).toEqual([
      `--network-veth-extra=${links[0]!.hostIf}:eth0`,
      `--network-veth-extra=${links[1]!.hostIf}:eth1`,
    ]);
  });

  it("gives an unaddressed private link a free /32 and the default route; keeps the previous one", async () => {
    const { assignPrivateAddresses, planLinks } = await import("./links.js");
    const links = planLinks("n1", "web", { mode: "private" });
    expect(links[0]!.defaultRoute).toBe(false);
    const taken = new Set(["10.213.0.2"]);
    expect(assignPrivateAddresses(links, "10.213.0.0/16", taken)).toEqual(["10.213.0.3"]);
    expect(links[0]).toMatchObject({ address: "10.213.0.3/32", gateway: "10.213.0.1", defaultRoute: true });
    expect(taken.has("10.213.0.3")).toBe(true);
    // a restart asks for its previous address back, and gets it while free
    const again = planLinks("n1", "web", { mode: "private" });
    expect(assignPrivateAddresses(again, "10.213.0.0/16", new Set(["10.213.0.2"]), ["10.213.0.9"])).toEqual([
      "10.213.0.9",
    ]);
    // an explicit address is left alone
    const fixed = planLinks("n1", "web", { mode: "private", address: "10.2.0.2/24" });
    expect(assignPrivateAddresses(fixed, "10.213.0.0/16", new Set())).toEqual([]);
    expect(fixed[0]!.address).toBe("10.2.0.2/24");
  });
});
