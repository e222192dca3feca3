import { describe, expect, it } from "vitest";
import { EnvPhase, LabPhase } from "../../proto/gen/protoctl/v1/types.js";
import { labPhase, labView } from "./lab-view.js";
import { parseLabSpec } from "./parse-spec.js";
import { planLab } from "./plan.js";

describe("labView", () => {
  it("fills networks, nodes, machines and addresses from the state and statuses", () => {
    const r = parseLabSpec(
      "name: l\nnetworks: { a: 10.0.0.0/24 }\nmachines:\n  m-{1..2}: { base: b, networks: [a] }\n  x: { base: b }\n",
    );
    if (!r.ok) throw new Error("bad spec");
    const { state } = planLab(r.spec, undefined);
    const view = labView({
      state,
      specYaml: "name: l",
      status: new Map([
        ["m-1", { node: "n1", phase: EnvPhase.ENV_PHASE_RUNNING }],
        ["m-2", { node: "n2", phase: EnvPhase.ENV_PHASE_RUNNING }],
        ["x", { node: "n2", phase: EnvPhase.ENV_PHASE_RUNNING }],
      ]),
    });
    expect(view.phase).toBe(LabPhase.LAB_PHASE_READY);
    expect(view.specDigest).toBe(state.specDigest);
    expect(view.networks).toEqual([
      { name: "a", subnet: "10.0.0.0/24", vni: state.networks.a!.vni, nodes: ["n1", "n2"] },
    ]);
    expect(view.machines).toEqual([
      {
        name: "m-1",
        env: "l-m-1",
        node: "n1",
        phase: EnvPhase.ENV_PHASE_RUNNING,
        addresses: { a: "10.0.0.2" },
      },
      {
        name: "m-2",
        env: "l-m-2",
        node: "n2",
        phase: EnvPhase.ENV_PHASE_RUNNING,
        addresses: { a: "10.0.0.3" },
      },
      { name: "x", env: "l-x", node: "n2", phase: EnvPhase.ENV_PHASE_RUNNING, addresses: {} },
    ]);
  });

  it("derives the lab phase", () => {
    const { RUNNING, LOST, PENDING, DELETING } = {
      RUNNING: EnvPhase.ENV_PHASE_RUNNING,
      LOST: EnvPhase.ENV_PHASE_LOST,
      PENDING: EnvPhase.ENV_PHASE_PENDING,
      DELETING: EnvPhase.ENV_PHASE_DELETING,
    };
    expect(labPhase([RUNNING, RUNNING])).toBe(LabPhase.LAB_PHASE_READY);
    expect(labPhase([RUNNING, LOST])).toBe(LabPhase.LAB_PHASE_DEGRADED);
    expect(labPhase([RUNNING, PENDING])).toBe(LabPhase.LAB_PHASE_PENDING);
    expect(labPhase([RUNNING, DELETING])).toBe(LabPhase.LAB_PHASE_DELETING);
    expect(labPhase([])).toBe(LabPhase.LAB_PHASE_PENDING);
  });
});
