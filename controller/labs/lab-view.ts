/**
 * Builds the API view of a lab (`Lab` from types.proto) from its stored
 * state and what the controller knows about its envs: placement and phase.
 * `lab describe`, `lab ls` and `lab graph` all read this shape.
 */
import { EnvPhase, type Lab, LabPhase } from "../../proto/gen/protoctl/v1/types.js";
import { type LabState, networkNodes } from "./lab-state.js";

export interface MachineStatus {
  node?: string;
  phase?: EnvPhase;
}

export interface LabViewInput {
  state: LabState;
  specYaml?: string;
  /** machine name → where its env runs and in which phase. */
  status?: ReadonlyMap<string, MachineStatus>;
  createdMs?: number;
  message?: string;
}

export function labView(input: LabViewInput): Lab {
  const { state } = input;
  const status = input.status ?? new Map<string, MachineStatus>();
  const placement = new Map<string, string>();
  for (const [m, s] of status) if (s.node) placement.set(m, s.node);
  const nodes = networkNodes(state, placement);
  const machines = Object.entries(state.machines).map(([name, m]) => {
    const addresses: Record<string, string> = {};
    for (const net of m.networks) {
      const a = state.networks[net]?.allocations[name];
      if (a !== undefined) addresses[net] = a;
    }
    const s = status.get(name);
    return {
      name,
      env: m.envName,
      node: s?.node ?? "",
      phase: s?.phase ?? EnvPhase.ENV_PHASE_UNSPECIFIED,
      addresses,
    };
  });
  return {
    name: state.name,
    specYaml: input.specYaml ?? "",
    specDigest: state.specDigest,
    phase: labPhase(machines.map((m) => m.phase)),
    networks: Object.entries(state.networks).map(([name, n]) => ({
      name,
      subnet: n.subnet,
      vni: n.vni,
      nodes: nodes[name] ?? [],
    })),
    machines,
    createdMs: input.createdMs ?? 0,
    message: input.message ?? "",
  };
}

/** READY when every machine runs; DEGRADED when one failed or was lost; PENDING otherwise. */
export function labPhase(phases: readonly EnvPhase[]): LabPhase {
  if (phases.some((p) => p === EnvPhase.ENV_PHASE_FAILED || p === EnvPhase.ENV_PHASE_LOST)) {
    return LabPhase.LAB_PHASE_DEGRADED;
  }
  if (phases.length > 0 && phases.every((p) => p === EnvPhase.ENV_PHASE_RUNNING))
    return LabPhase.LAB_PHASE_READY;
  if (phases.some((p) => p === EnvPhase.ENV_PHASE_DELETING)) return LabPhase.LAB_PHASE_DELETING;
  return LabPhase.LAB_PHASE_PENDING;
}
