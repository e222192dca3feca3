import { describe, expect, it } from "vitest";
import { loopsUnder, mountsUnder } from "../../common/state-cleanup.js";
import { defaultNodeName, defaultPoolSize } from "./up.js";

const GiB = 1024 ** 3;

describe("up defaults", () => {
  it("pool size: a quarter of available memory, capped at 8G, floored to 64M, at least 512M", () => {
    expect(defaultPoolSize("MemTotal: 1 kB\nMemAvailable:   16777216 kB\n")).toBe(4 * GiB);
    expect(defaultPoolSize("MemAvailable:   67108864 kB\n")).toBe(8 * GiB);
    expect(defaultPoolSize("MemAvailable:   1048576 kB\n")).toBe(512 * 1024 ** 2);
    expect(defaultPoolSize("MemAvailable:   5000000 kB\n") % (64 * 1024 ** 2)).toBe(0);
  });
  it("node name from the host name, or local", () => {
    expect(defaultNodeName("Build-Host.example.org")).toBe("build-host");
    expect(defaultNodeName("my_box")).toBe("my-box");
    expect(defaultNodeName("___")).toBe("local");
  });
});

describe("cleanup parsers", () => {
  const mountinfo = [
    "22 1 0:21 / / rw - ext4 /dev/sda1 rw",
    "40 22 0:40 / /var/lib/protoctl/local/agent/pool rw - tmpfs tmpfs rw",
    "41 40 7:0 / /var/lib/protoctl/local/agent/pool/mnt rw - btrfs /dev/loop0 rw",
    "42 41 0:50 / /var/lib/protoctl/local/agent/pool/mnt/@env/a/root rw - overlay overlay rw",
    "43 22 0:51 / /var/lib/protoctl/local-other rw - tmpfs tmpfs rw",
    "44 22 0:52 / /var/lib/protoctl/local/with\\040space rw - tmpfs tmpfs rw",
  ].join("\n");
  it("mounts under the state dir, deepest first, not its siblings", () => {
    expect(mountsUnder("/var/lib/protoctl/local", mountinfo)).toEqual([
      "/var/lib/protoctl/local/agent/pool/mnt/@env/a/root",
      "/var/lib/protoctl/local/agent/pool/mnt",
      "/var/lib/protoctl/local/agent/pool",
      "/var/lib/protoctl/local/with space",
    ]);
  });
  it("loop devices backed by files under the state dir (deleted ones too)", () => {
    const json = JSON.stringify({
      loopdevices: [
        { name: "/dev/loop0", "back-file": "/var/lib/protoctl/local/agent/pool/pool.img" },
        { name: "/dev/loop1", "back-file": "/var/lib/protoctl/local/agent/x.img (deleted)" },
        { name: "/dev/loop2", "back-file": "/srv/other.img" },
        { name: "/dev/loop3", "back-file": null },
      ],
    });
    expect(loopsUnder("/var/lib/protoctl/local", json)).toEqual(["/dev/loop0", "/dev/loop1"]);
    expect(loopsUnder("/x", "")).toEqual([]);
  });
});
