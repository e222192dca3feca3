import { describe, expect, it } from "vitest";
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import { formatIssues, parseLabSpec } from "./parse-spec.js";
import { planLab } from "./plan.js";
import { type EnvView, emptyRollout, type LabRollout, mergeRollout, rolloutSteps } from "./rollout.js";
import type { LabSpec } from "./spec-types.js";

function spec(text: string): LabSpec {
  const r = parseLabSpec(text);
  if (!r.ok) throw new Error(formatIssues(r.issues).join("\n"));
  return r.spec;
}

const lab = (machines: string) => spec(`name: t\nnetworks:\n  red: 10.30.0.0/24\nmachines:\n${machines}`);
const FIRST = lab("  a-{1..2}: { base: deb@1, networks: [red] }\n  b: { base: deb@1, networks: [red] }\n");
// a-3 added, b changed (replaced), a-1 and a-2 kept with a new peer
const SECOND = lab("  a-{1..3}: { base: deb@1, networks: [red] }\n  b: { base: deb@2, networks: [red] }\n");

const running = (node = "n1"): EnvView => ({ spec: true, phase: EnvPhase.ENV_PHASE_RUNNING, node });

function firstApplied() {
  const p1 = planLab(FIRST, undefined);
  const r1 = mergeRollout(undefined, undefined, p1);
  // the loop created everything: each machine holds the table it was created with
  const done: LabRollout = { ...emptyRollout() };
  for (const [m, s] of Object.entries(p1.state.machines)) done.hostsApplied[m] = s.hostsDigest;
  return { p1, r1, done };
}

describe("mergeRollout", () => {
  it("a new lab: every machine to create, nothing to delete", () => {
    const { r1 } = firstApplied();
    expect(r1.create).toEqual(["t-a-1", "t-a-2", "t-b"]);
    expect(r1.remove).toEqual([]);
    expect(r1.replace).toEqual([]);
    expect(r1.hostsApplied).toEqual({});
  });

  it("a change: replaced and new machines listed, kept machines keep what they hold", () => {
    const { p1, done } = firstApplied();
    const p2 = planLab(SECOND, p1.state);
    const r2 = mergeRollout(p1.state, done, p2);
    expect(r2.create).toEqual(["t-a-3"]);
    expect(r2.replace).toEqual(["t-b"]);
    expect(r2.hostsApplied).toEqual({ "a-1": done.hostsApplied["a-1"], "a-2": done.hostsApplied["a-2"] });
    expect(p2.state.machines["a-1"]!.hostsDigest).not.toBe(r2.hostsApplied["a-1"]);
  });

  it("an env still going that the new spec wants again is replaced, not kept", () => {
    const { p1, done } = firstApplied();
    const without = lab("  a-{1..2}: { base: deb@1, networks: [red] }\n");
    const p2 = planLab(without, p1.state);
    const r2 = mergeRollout(p1.state, done, p2);
    expect(r2.remove).toEqual(["t-b"]);
    // applied again before the loop deleted it
    const p3 = planLab(FIRST, p2.state);
    const r3 = mergeRollout(p2.state, r2, p3);
    expect(r3.remove).toEqual([]);
    expect(r3.replace).toEqual(["t-b"]);
  });

  it("a machine still to create that the new spec drops is removed", () => {
    const { p1, r1 } = firstApplied();
    const p2 = planLab(lab("  a-{1..2}: { base: deb@1, networks: [red] }\n"), p1.state);
    const r2 = mergeRollout(p1.state, r1, p2);
    expect(r2.create).toEqual(["t-a-1", "t-a-2"]);
    expect(r2.remove).toEqual(["t-b"]);
  });
});

describe("rolloutSteps", () => {
  const second = () => {
    const { p1, done } = firstApplied();
    const p2 = planLab(SECOND, p1.state);
    return { state: p2.state, r: mergeRollout(p1.state, done, p2) };
  };

  it("deletes what must go first and creates nothing while it exists", () => {
    const { state, r } = second();
    const envs = new Map([
      ["t-a-1", running()],
      ["t-a-2", running()],
      ["t-b", running()],
    ]);
    const d = rolloutSteps(state, r, envs);
    expect(d.converged).toBe(false);
    expect(d.steps.filter((s) => s.kind !== "hosts")).toEqual([{ kind: "delete", env: "t-b" }]);
    // the kept machines' /etc/hosts are due at once (a-3 is their new peer)
    expect(
      d.steps
        .filter((s) => s.kind === "hosts")
        .map((s) => s.machine)
        .sort(),
    ).toEqual(["a-1", "a-2"]);
  });

  it("a spec gone but the machine still there: still waits", () => {
    const { state, r } = second();
    const envs = new Map([
      ["t-a-1", running()],
      ["t-b", { spec: false, phase: EnvPhase.ENV_PHASE_DELETING, node: "n1" }],
    ]);
    const d = rolloutSteps(state, r, envs);
    expect(d.steps.filter((s) => s.kind === "create" || s.kind === "delete")).toEqual([]);
  });

  it("once gone, creates the new and the replacement", () => {
    const { state, r } = second();
    const d = rolloutSteps(state, r, new Map([["t-a-1", running()]]));
    expect(d.steps.filter((s) => s.kind === "create")).toEqual([
      { kind: "create", env: "t-b", machine: "b" },
      { kind: "create", env: "t-a-3", machine: "a-3" },
    ]);
  });

  it("a removed machine is forgotten once gone, not before", () => {
    const r = { ...emptyRollout(), remove: ["t-x"] };
    const { p1 } = firstApplied();
    expect(rolloutSteps(p1.state, r, new Map([["t-x", running()]])).steps).toEqual([
      { kind: "delete", env: "t-x" },
    ]);
    expect(rolloutSteps(p1.state, r, new Map()).steps).toEqual([{ kind: "forget", env: "t-x" }]);
  });

  it("hosts: only running machines, not twice the same digest, not after a terminal failure", () => {
    const { state } = second();
    const r: LabRollout = { ...emptyRollout(), hostsApplied: { "a-1": state.machines["a-1"]!.hostsDigest } };
    const envs = new Map<string, EnvView>([
      ["t-a-1", running()],
      ["t-a-2", { spec: true, phase: EnvPhase.ENV_PHASE_STOPPED, node: "n2" }],
      ["t-a-3", running("n3")],
      ["t-b", running("n2")],
    ]);
    const d = rolloutSteps(state, r, envs);
    expect(d.steps.map((s) => s.kind === "hosts" && s.machine)).toEqual(["a-3", "b"]);
    expect(d.converged).toBe(false);
    // a-2 runs again: due now
    envs.set("t-a-2", running("n2"));
    r.hostsErrors["a-3"] = { digest: state.machines["a-3"]!.hostsDigest, message: "exit 1", terminal: true };
    r.hostsErrors.b = { digest: state.machines.b!.hostsDigest, message: "unreachable", terminal: false };
    const d2 = rolloutSteps(state, r, envs);
    expect(d2.steps.map((s) => s.kind === "hosts" && s.machine)).toEqual(["a-2", "b"]);
  });

  it("converged when nothing is listed and every running machine holds its table", () => {
    const { state } = second();
    const r = emptyRollout();
    for (const [m, s] of Object.entries(state.machines)) r.hostsApplied[m] = s.hostsDigest;
    const envs = new Map(Object.values(state.machines).map((s) => [s.envName, running()]));
    expect(rolloutSteps(state, r, envs)).toEqual({ steps: [], converged: true });
  });
});
