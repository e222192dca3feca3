import { describe, expect, it } from "vitest";
import {
  describeProcess,
  diffSnapshots,
  environValue,
  formatLeaks,
  multisetAdded,
  parseCmdline,
  parseIpLinkJson,
  parseIptablesSave,
  parseLosetupJson,
  parseMountinfo,
  parseNbdDevices,
  parseNetnsList,
  parseStatStartTime,
  processKind,
  type Snapshot,
} from "./snapshot.js";

// Captured on the development machine (Debian 12, kernel 6.18).
const MOUNTINFO = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
301 27 0:45 / /tmp/protoctl-pool-aB3/tmpfs rw,relatime shared:150 - tmpfs tmpfs rw,size=589824k
305 27 7:0 / /tmp/protoctl-pool-aB3/mnt rw,relatime shared:152 - btrfs /dev/loop0 rw,ssd,space_cache=v2,subvolid=5,subvol=/
310 27 0:46 / /tmp/with\\040space rw - tmpfs tmpfs rw
320 27 0:26 / /run/netns rw,nosuid,nodev shared:160 - tmpfs tmpfs rw,size=2467000k,mode=755
321 320 0:4 net:[4026532400] /run/netns/pt-ab12-h0 rw shared:161 - nsfs nsfs rw
`;

const LOSETUP = `{
   "loopdevices": [
      {
         "name": "/dev/loop0",
         "sizelimit": 0,
         "offset": 0,
         "autoclear": false,
         "ro": false,
         "back-file": "/tmp/protoctl-pool-aB3/tmpfs/pool.img",
         "dio": false,
         "log-sec": 512
      }
   ]
}
`;

const STAT =
  "9676 (cat (odd) name) R 9670 9670 4627 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 70605 3133440 406";

function snap(p: Partial<Snapshot> = {}): Snapshot {
  return {
    mounts: [],
    loops: [],
    netns: [],
    links: [],
    processes: [],
    cgroups: [],
    nbd: [],
    rules: [],
    tmpdirs: [],
    ...p,
  };
}

describe("parsers", () => {
  it("reads mountinfo, unescaping paths and skipping /run/netns itself", () => {
    expect(parseMountinfo(MOUNTINFO)).toEqual([
      "/proc proc proc",
      "/ ext4 /dev/vda",
      "/tmp/protoctl-pool-aB3/tmpfs tmpfs tmpfs",
      "/tmp/protoctl-pool-aB3/mnt btrfs /dev/loop0",
      "/tmp/with space tmpfs tmpfs",
      "/run/netns/pt-ab12-h0 nsfs nsfs",
    ]);
  });

  it("reads losetup -J, including its empty output", () => {
    expect(parseLosetupJson(LOSETUP)).toEqual(["/dev/loop0 /tmp/protoctl-pool-aB3/tmpfs/pool.img"]);
    expect(parseLosetupJson("")).toEqual([]);
    expect(parseLosetupJson('{"loopdevices": []}')).toEqual([]);
  });

  it("reads ip netns list with and without ids", () => {
    expect(parseNetnsList("pt-ab12-h1 (id: 1)\npt-ab12-h0\n\n")).toEqual(["pt-ab12-h1", "pt-ab12-h0"]);
  });

  it("reads ip -j link", () => {
    expect(parseIpLinkJson('[{"ifindex":1,"ifname":"lo"},{"ifindex":4,"ifname":"eth0"}]')).toEqual([
      "lo",
      "eth0",
    ]);
  });

  it("reads cmdline, environ and the start time past a comm with spaces and parens", () => {
    expect(parseCmdline("etcd\0--name\0test\0")).toEqual(["etcd", "--name", "test"]);
    expect(environValue("A=1\0PROTOCTL_TEST_RUN=ab12\0B=2\0", "PROTOCTL_TEST_RUN")).toBe("ab12");
    expect(environValue("A=1\0", "PROTOCTL_TEST_RUN")).toBeUndefined();
    expect(parseStatStartTime(STAT)).toBe("70605");
  });
});

describe("processKind", () => {
  it.each([
    [["/usr/bin/etcd", "--name", "x"], "etcd"],
    [["systemd-nspawn", "--register=no", "-D", "/r"], "systemd-nspawn"],
    [["qemu-nbd", "-r", "-t"], "qemu-nbd"],
    [["nbdkit", "file", "x"], "nbdkit"],
    [["nbdfuse", "/m", "nbd://x"], "nbdfuse"],
    [["nbdcopy", "a", "b"], "nbdcopy"],
    [["/usr/local/bin/protoctl", "agent", "--pool", "x"], "protoctl agent"],
    [["node", "/src/protoctl/dist/cli/main.js", "controller"], "protoctl controller"],
    [["node", "/src/protoctl/node_modules/vitest/vitest.mjs", "run"], undefined],
    [["node", "/src/protoctl/dist/cli/main.js", "supervise", "--state-dir", "/s"], "protoctl supervise"],
    [
      [
        "/usr/bin/node",
        "--import",
        "/r/register.mjs",
        "/r/test/support/agent/agent-process.ts",
        "--name",
        "a",
      ],
      "protoctl agent",
    ],
    [["node", "/tmp/b/agent-process.js", "--listen", "x"], "protoctl agent"],
    [
      ["node", "--import", "/r/register.mjs", "/r/test/support/controller/run-controller.ts", "{}"],
      "protoctl controller",
    ],
    [["protoctl", "env", "ls"], undefined],
    [["bash", "-c", "etcd"], undefined],
    [[], undefined],
  ])("%j is %s", (argv, kind) => {
    expect(processKind(argv)).toBe(kind);
  });
});

describe("other processes, NBD devices, firewall rules", () => {
  it("names a process by its program, or node by its script", () => {
    expect(describeProcess(["/bin/sleep", "100"])).toBe("sleep");
    expect(describeProcess(["/usr/bin/node", "--import", "x.mjs", "/a/b/server.ts", "--x"])).toBe(
      "node server.ts",
    );
    expect(describeProcess(["node", "-e", "1"])).toBe("node");
  });

  it("lists connected NBD devices only", () => {
    expect(
      parseNbdDevices([
        ["nbd1", "4242\n"],
        ["nbd0", undefined],
        ["nbd2", ""],
        ["loop0", "1"],
      ]),
    ).toEqual(["nbd1 pid=4242"]);
  });

  it("keeps rule lines of iptables-save with their table", () => {
    const text = `# Generated by iptables-save v1.8.9
*nat
:PREROUTING ACCEPT [0:0]
:protoctl-fwd - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j protoctl-fwd
-A protoctl-fwd -p tcp --dport 18080 -j DNAT --to-destination 10.0.0.2:80
COMMIT
*filter
:INPUT ACCEPT [12:345]
COMMIT
`;
    expect(parseIptablesSave(text, "ip")).toEqual([
      "ip nat -A PREROUTING -m addrtype --dst-type LOCAL -j protoctl-fwd",
      "ip nat -A protoctl-fwd -p tcp --dport 18080 -j DNAT --to-destination 10.0.0.2:80",
    ]);
  });
});

describe("diffSnapshots", () => {
  it("reports a new NBD device, firewall rule and temp dir", () => {
    const before = snap({ rules: ["ip nat -A X -j Y"], tmpdirs: ["/tmp/protoctl-a"] });
    const after = snap({
      nbd: ["nbd0 pid=7"],
      rules: ["ip nat -A X -j Y", "ip nat -A X -j Z"],
      tmpdirs: ["/tmp/protoctl-a", "/tmp/protoctl-b"],
    });
    expect(diffSnapshots(before, after, "r")).toEqual([
      { kind: "nbd", what: "nbd0 pid=7" },
      { kind: "rule", what: "ip nat -A X -j Z" },
      { kind: "tmpdir", what: "/tmp/protoctl-b" },
    ]);
  });

  it("reports a loop device orphaned on an unmounted pool tmpfs, even one that was there before", () => {
    const before = snap({ loops: ["/dev/loop1 /pool.img", "/dev/loop0 /x"] });
    const after = snap({ loops: ["/dev/loop1 /pool.img", "/dev/loop0 /x", "/dev/loop2 /pool.img"] });
    expect(diffSnapshots(before, after, "r")).toEqual([
      { kind: "loop", what: "/dev/loop2 /pool.img" },
      {
        kind: "loop",
        what: "/dev/loop1 /pool.img (orphaned before this run too: its tmpfs is gone; losetup -d it)",
      },
    ]);
  });

  it("reports nothing when nothing changed", () => {
    const s = snap({ mounts: ["/ ext4 /dev/vda"], loops: ["/dev/loop0 /x"], netns: ["a"], links: ["lo"] });
    expect(diffSnapshots(s, s, "run1")).toEqual([]);
  });

  it("reports every kind of new thing, and a second mount stacked on a known mount point", () => {
    const before = snap({ mounts: ["/a tmpfs tmpfs"], links: ["lo"] });
    const after = snap({
      mounts: ["/a tmpfs tmpfs", "/a tmpfs tmpfs"],
      loops: ["/dev/loop3 /tmp/p.img"],
      netns: ["pt-1-h0"],
      links: ["lo", "ptbr1"],
      processes: [{ key: "10:5", pid: 10, kind: "etcd", argv: ["etcd"], marker: "run1" }],
      cgroups: ["/sys/fs/cgroup/memory/protoctl-n1"],
    });
    expect(diffSnapshots(before, after, "run1").map((l) => `${l.kind} ${l.what}`)).toEqual([
      "mount /a tmpfs tmpfs",
      "loop /dev/loop3 /tmp/p.img",
      "netns pt-1-h0",
      "link ptbr1",
      "process pid 10 (etcd): etcd",
      "cgroup /sys/fs/cgroup/memory/protoctl-n1",
    ]);
  });

  it("ignores things that went away, and processes of another test run", () => {
    const before = snap({
      mounts: ["/gone tmpfs tmpfs"],
      processes: [{ key: "1:1", pid: 1, kind: "etcd", argv: [] }],
    });
    const after = snap({
      processes: [
        { key: "7:9", pid: 7, kind: "etcd", argv: ["etcd"], marker: "other-run" },
        { key: "8:9", pid: 8, kind: "nbdkit", argv: ["nbdkit"] },
      ],
    });
    expect(diffSnapshots(before, after, "run1").map((l) => l.what)).toEqual(["pid 8 (nbdkit): nbdkit"]);
  });

  it("tells a reused pid from the same process", () => {
    const before = snap({ processes: [{ key: "5:100", pid: 5, kind: "etcd", argv: ["etcd"] }] });
    const after = snap({ processes: [{ key: "5:200", pid: 5, kind: "etcd", argv: ["etcd"] }] });
    expect(diffSnapshots(before, after, "r")).toHaveLength(1);
  });

  it("formats a list a person can act on", () => {
    expect(formatLeaks([])).toMatch(/nothing left behind/);
    const text = formatLeaks([{ kind: "loop", what: "/dev/loop3 /tmp/p.img" }]);
    expect(text).toMatch(/FAILED.*1 thing/);
    expect(text).toContain("loop    /dev/loop3 /tmp/p.img");
  });

  it("counts repeats", () => {
    expect(multisetAdded(["a", "b"], ["b", "a", "a"])).toEqual(["a"]);
  });
});
