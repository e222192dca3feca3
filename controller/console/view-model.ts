/**
 * What the console shows, as plain JSON: nodes, envs, pushes in progress
 * and labs, composed from etcd the same way the API composes them. Sent
 * whole on every change (debounced): at the sizes one browser tab can show,
 * a full picture is simpler and sturdier than patches.
 */
import {
  AttachmentPhase,
  EnvPhase,
  type EnvStatus,
  LabPhase,
  NodeState,
} from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { labView, type MachineStatus } from "../labs/index.js";
import { listNodes } from "../server/node-api.js";
import type { ConsoleEnv, ConsoleLab, ConsolePush, ConsoleState } from "./view-types.js";

export type { ConsoleState } from "./view-types.js";

const lower = (s: string | undefined, prefix: string) => (s ?? "unknown").replace(prefix, "").toLowerCase();

export async function consoleState(ctx: ControllerContext, cluster: string): Promise<ConsoleState> {
  const s = ctx.store;
  const [nodes, specs, statuses, atts, labs] = await Promise.all([
    listNodes(ctx),
    s.envSpecs.list(),
    s.envStatus.list(),
    s.listAttachments(),
    s.labStates.list(),
  ]);
  const statusBy = new Map<string, EnvStatus>();
  for (const it of statuses.items) statusBy.set(s.envStatus.nameOf(it.key)!, it.value);
  const specNames = new Set<string>();
  const envs: ConsoleEnv[] = specs.items.map(({ key, value: spec }) => {
    const name = s.envSpecs.nameOf(key)!;
    specNames.add(name);
    const st = statusBy.get(name);
    const version = spec.base?.version || st?.baseVersion || 0;
    return {
      name,
      phase: lower(EnvPhase[st?.phase ?? EnvPhase.ENV_PHASE_PENDING], "ENV_PHASE_"),
      node: st?.node ?? "",
      base: spec.base ? `${spec.base.name}${version ? `@${version}` : ""}` : "",
      layers: spec.layers,
      group: spec.group,
      message: st?.message ?? "",
      createdMs: st?.createdMs ?? 0,
      addresses: st?.addresses ?? [],
    };
  });
  // an env being deleted keeps its status after its spec is gone
  for (const [name, st] of statusBy) {
    if (specNames.has(name)) continue;
    envs.push({
      name,
      phase: "deleting",
      node: st.node,
      base: "",
      layers: [],
      group: "",
      message: st.message,
      createdMs: st.createdMs,
      addresses: [],
    });
  }
  envs.sort((a, b) => a.name.localeCompare(b.name));

  const attBy = new Map<string, { attached: number; hydrating: number }>();
  const pushes = new Map<string, ConsolePush>();
  for (const { value: a } of atts) {
    const n = attBy.get(a.node) ?? { attached: 0, hydrating: 0 };
    if (a.phase === AttachmentPhase.ATTACHMENT_PHASE_ATTACHED) n.attached++;
    if (a.phase === AttachmentPhase.ATTACHMENT_PHASE_HYDRATING) n.hydrating++;
    attBy.set(a.node, n);
    const key = `${a.base}@${a.version}`;
    const p = pushes.get(key) ?? { base: a.base, version: a.version, nodes: [] };
    const local = a.phase === AttachmentPhase.ATTACHMENT_PHASE_LOCAL;
    p.nodes.push({
      node: a.node,
      phase: lower(AttachmentPhase[a.phase], "ATTACHMENT_PHASE_"),
      percent: Math.round((local ? 1 : a.hydratedFraction) * 1000) / 10,
      source: a.sourceNode,
      message: a.message,
    });
    pushes.set(key, p);
  }

  const labOut: ConsoleLab[] = labs.items.map(({ value: rec }) => {
    const status = new Map<string, MachineStatus>();
    for (const [m, ms] of Object.entries(rec.state.machines)) {
      const st = statusBy.get(ms.envName);
      if (st)
        status.set(m, {
          node: st.node,
          phase: specNames.has(ms.envName) ? st.phase : EnvPhase.ENV_PHASE_DELETING,
        });
    }
    const lab = labView({ state: rec.state, status });
    return {
      name: lab.name,
      phase: rec.deleting ? "deleting" : lower(LabPhase[lab.phase], "LAB_PHASE_"),
      networks: lab.networks.map((n) => ({ name: n.name, subnet: n.subnet, nodes: n.nodes })),
      machines: lab.machines.map((m) => ({
        name: m.name,
        env: m.env,
        node: m.node,
        phase: lower(EnvPhase[m.phase], "ENV_PHASE_"),
        addresses: m.addresses,
      })),
    };
  });

  return {
    cluster,
    controller: ctx.id,
    leader: ctx.leader.leaderId(),
    timeMs: Date.now(),
    nodes: nodes.map((n) => ({
      name: n.name,
      state: n.state === NodeState.NODE_STATE_READY ? "ready" : "not_ready",
      cordoned: n.cordoned,
      draining: n.draining,
      address: n.address,
      poolSizeBytes: n.capacity?.poolSizeBytes ?? 0,
      poolFreeBytes: n.capacity?.poolFreeBytes ?? 0,
      envs: n.capacity?.envs ?? 0,
      bases: n.baseVersions,
      attached: attBy.get(n.name)?.attached ?? 0,
      hydrating: attBy.get(n.name)?.hydrating ?? 0,
      lastSeenMs: n.lastSeenMs,
    })),
    envs,
    pushes: [...pushes.values()],
    labs: labOut,
  };
}
