import { describe, expect, it } from "vitest";
import { subtreeControlWrite, v2LimitWrites } from "./cgroup-v2.js";
import { envCgroupSet, execProcsFiles, limitControllers, startProcsFiles, V2_KEY } from "./cgroups.js";

describe("v2LimitWrites", () => {
  it("memory (and no swap beyond it), cpu quota over a 100 ms period, pids", () => {
    expect(v2LimitWrites({ memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pids: 50 }, true)).toEqual([
      ["memory.max", "67108864"],
      ["memory.swap.max", "0"],
      ["cpu.max", "50000 100000"],
      ["pids.max", "50"],
    ]);
  });

  it("no swap file, no swap write; a tiny cpu share is floored at 1 ms", () => {
    expect(v2LimitWrites({ memoryBytes: 1 << 20, cpus: 0.001 }, false)).toEqual([
      ["memory.max", "1048576"],
      ["cpu.max", "1000 100000"],
    ]);
    expect(v2LimitWrites({}, true)).toEqual([]);
  });
});

describe("subtreeControlWrite", () => {
  it("enables what is missing and offered, nothing else", () => {
    expect(subtreeControlWrite([], ["cpuset", "cpu", "io", "memory", "pids"])).toBe("+memory +cpu +pids");
    expect(subtreeControlWrite(["memory"], ["memory", "pids"])).toBe("+pids");
    expect(subtreeControlWrite(["memory", "cpu", "pids"], ["memory", "cpu", "pids"])).toBe("");
    expect(subtreeControlWrite([], [])).toBe("");
  });
});

describe("v2 cgroup set", () => {
  const h = { [V2_KEY]: "/sys/fs/cgroup/system.slice/a.service" };

  it("one unified dir below the base; nspawn and execs join it, execs its payload", () => {
    const set = envCgroupSet(h, "n1", "web", { memoryBytes: 1 });
    expect(set).toEqual({
      dirs: { unified: "/sys/fs/cgroup/system.slice/a.service/protoctl/n1/web" },
      v2Base: "/sys/fs/cgroup/system.slice/a.service",
    });
    expect(startProcsFiles(set)).toEqual([
      "/sys/fs/cgroup/system.slice/a.service/protoctl/n1/web/cgroup.procs",
    ]);
    // no payload dir exists for this made-up path: nothing to join
    expect(execProcsFiles(set)).toEqual([]);
  });

  it("a base that does not exist offers no controllers", () => {
    expect(limitControllers({ [V2_KEY]: "/nonexistent/cgroup" })).toEqual([]);
    expect(limitControllers({ memory: "/m", pids: "/p", systemd: "/s" })).toEqual(["memory", "pids"]);
  });
});
