import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { envCgroupSet, listEnvCgroups, removeCgroups, startProcsFiles } from "./cgroups.js";
import {
  envOfScope,
  listScopeEnvs,
  SCOPES_KEY,
  scopeProperties,
  scopeRunArgv,
  scopeUnit,
} from "./systemd-scopes.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("systemd scopes", () => {
  it("limits become the unit properties matching cgroup-v2's own writes", () => {
    expect(scopeProperties({ memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pids: 50 })).toEqual([
      "Delegate=yes",
      "MemoryMax=67108864",
      "MemorySwapMax=0",
      "CPUQuota=50%",
      "TasksMax=50",
    ]);
    expect(scopeProperties({ cpus: 0.001 })).toEqual(["Delegate=yes", "CPUQuota=1%"]);
    expect(scopeProperties({ cpus: 1.234 })).toEqual(["Delegate=yes", "CPUQuota=123.40%"]);
    expect(scopeProperties(undefined)).toEqual(["Delegate=yes"]);
  });

  it("systemd-run's argv ends with -- so the command follows as given", () => {
    const a = scopeRunArgv("n1", "web", { pids: 10 });
    expect(a.slice(0, 2)).toEqual(["systemd-run", "--scope"]);
    expect(a).toContain("--unit=protoctl_n1_web.scope");
    expect(a).toContain("--slice=protoctl.slice");
    expect(a).toContain("--property=TasksMax=10");
    expect(a.at(-1)).toBe("--");
  });

  it("a scope name maps back to its env only for its own node ('_' is in no name)", () => {
    expect(envOfScope("n1", scopeUnit("n1", "a-b"))).toBe("a-b");
    expect(envOfScope("n1", scopeUnit("n1-x", "web"))).toBeUndefined();
    expect(envOfScope("n1-x", scopeUnit("n1", "web"))).toBeUndefined();
    expect(envOfScope("n1", "protoctl_n1_.scope")).toBeUndefined();
    expect(envOfScope("n1", "protoctl_n1_web.service")).toBeUndefined();
  });

  it("env cgroups are the scopes' dirs: nothing to make or join before start, the slice is never removed", () => {
    const slice = mkdtempSync(join(tmpdir(), "protoctl-scopes-"));
    dirs.push(slice);
    const h = { [SCOPES_KEY]: slice };
    const set = envCgroupSet(h, "n1", "web", { memoryBytes: 1 << 20 });
    expect(set).toEqual({
      dirs: { unified: join(slice, "protoctl_n1_web.scope") },
      scope: "protoctl_n1_web.scope",
    });
    expect(startProcsFiles(set)).toEqual([]);
    mkdirSync(join(set.dirs.unified!, "payload"), { recursive: true });
    mkdirSync(join(slice, "protoctl_n2_other.scope"));
    expect(listEnvCgroups(h, "n1")).toEqual(["web"]);
    expect(listScopeEnvs(slice, "n2")).toEqual(["other"]);
    expect(removeCgroups(set)).toEqual([]);
    expect(listEnvCgroups(h, "n1")).toEqual([]);
    // the slice and the other node's scope stay
    expect(listScopeEnvs(slice, "n2")).toEqual(["other"]);
  });
});
