import { describe, expect, it } from "vitest";
import {
  AGENT_LEAF,
  classifyCgroups,
  describeCgroupHost,
  missingControllers,
  parseControllers,
  v2BasePath,
} from "./cgroup-mode.js";

// /proc/self/cgroup as read on the hybrid development machine and in the Debian 12 VM
const HYBRID = [
  "12:pids:/job",
  "11:memory:/job",
  "4:cpu,cpuacct:/job",
  "1:name=systemd:/job",
  "0::/job",
].join("\n");
const V2 = "0::/system.slice/protoctl-agent.service\n";

describe("parseControllers", () => {
  it("splits the files' space-separated names, newline and all", () => {
    expect(parseControllers("cpuset cpu io memory hugetlb pids rdma misc\n")).toEqual([
      "cpuset",
      "cpu",
      "io",
      "memory",
      "hugetlb",
      "pids",
      "rdma",
      "misc",
    ]);
    expect(parseControllers("\n")).toEqual([]);
  });
});

describe("classifyCgroups", () => {
  it("hybrid: the v1 limit controllers mounted and joined", () => {
    const h = classifyCgroups({ selfCgroup: HYBRID, v1Mounted: ["memory", "cpu", "pids"] });
    expect(h).toEqual({ mode: "hybrid", available: ["memory", "cpu", "pids"] });
  });

  it("hybrid with a controller not mounted offers only the others", () => {
    const h = classifyCgroups({ selfCgroup: HYBRID, v1Mounted: ["memory"] });
    expect(h.available).toEqual(["memory"]);
  });

  it("v2: base is the own cgroup, controllers what it offers its children", () => {
    const h = classifyCgroups({
      selfCgroup: V2,
      rootControllers: "cpuset cpu io memory hugetlb pids\n",
      v1Mounted: [],
      baseControllers: "memory pids\n",
    });
    expect(h).toEqual({
      mode: "v2",
      base: "/system.slice/protoctl-agent.service",
      available: ["memory", "pids"],
    });
  });

  it("v2 after the agent moved into its leaf: the parent is the base", () => {
    const h = classifyCgroups({
      selfCgroup: `0::/system.slice/a.service/${AGENT_LEAF}\n`,
      rootControllers: "memory\n",
      v1Mounted: [],
      baseControllers: "cpu memory pids",
    });
    expect(h.base).toBe("/system.slice/a.service");
    expect(h.available).toEqual(["memory", "cpu", "pids"]);
  });

  it("neither: mode none, nothing available", () => {
    expect(classifyCgroups({ selfCgroup: "", v1Mounted: [] })).toEqual({ mode: "none", available: [] });
    // a unified root but no line for it in /proc/self/cgroup (another cgroup namespace view)
    expect(classifyCgroups({ selfCgroup: "", rootControllers: "memory", v1Mounted: [] }).mode).toBe("none");
  });
});

describe("v2BasePath", () => {
  it("only strips our own leaf name", () => {
    expect(v2BasePath(`/x/${AGENT_LEAF}`)).toBe("/x");
    expect(v2BasePath(`/${AGENT_LEAF}`)).toBe("/");
    expect(v2BasePath("/x/agent")).toBe("/x/agent");
    expect(v2BasePath("/")).toBe("/");
  });
});

describe("missingControllers", () => {
  it("lists the controllers set limits need and the host lacks", () => {
    expect(missingControllers({ memoryBytes: 64 << 20, cpus: 0.5, pids: 50 }, ["memory"])).toEqual([
      "cpu",
      "pids",
    ]);
    expect(missingControllers({ memoryBytes: 0, cpus: 0, pids: 0 }, [])).toEqual([]);
    expect(missingControllers({}, [])).toEqual([]);
  });
});

describe("describeCgroupHost", () => {
  it("says the mode and where envs go", () => {
    expect(describeCgroupHost({ mode: "v2", base: "/a.service", available: ["memory"] })).toBe(
      "cgroup v2 unified: envs below /a.service/protoctl, memory",
    );
    expect(describeCgroupHost({ mode: "v2", base: "/", available: [] })).toBe(
      "cgroup v2 unified: envs below /protoctl, no limit controllers",
    );
    expect(describeCgroupHost({ mode: "hybrid", available: ["memory", "cpu", "pids"] })).toBe(
      "hybrid (cgroup v1 limits): memory cpu pids",
    );
  });
});
