/**
 * Multi-host labs: the pure logic. Parse and validate a spec, plan it
 * against the stored state (IPAM, VNIs, interface names, per-machine
 * EnvSpecs with /etc/hosts), and draw it. No I/O here; the controller's
 * store, scheduler and reconcile loops execute the plans.
 */
export { canonicalJson, digestOf } from "./canonical.js";
export { type ExpandedName, expandMachineName, MAX_EXPANSION } from "./expand.js";
export { type GraphFormat, labGraph } from "./graph.js";
export { hostsFileText } from "./hosts-file.js";
export {
  allocate,
  type IpamNetwork,
  type IpamRequest,
  type IpamResult,
  type IpamState,
  toIpamState,
  withPrefix,
} from "./ipam.js";
export {
  type ClusterNetworkIds,
  clusterNetworkIds,
  type LabMachineState,
  type LabNetworkState,
  type LabState,
  networkNodes,
} from "./lab-state.js";
export { type LabViewInput, labPhase, labView, type MachineStatus } from "./lab-view.js";
export { hostsFor, type Membership, machineEnvSpec, type ResolvedAttachment } from "./machine-env-spec.js";
export {
  allocateVni,
  hostVethName,
  IFNAME_MAX,
  isValidIfName,
  type NetworkIfNames,
  networkIfNames,
  VNI_MAX,
  VNI_MIN,
} from "./net-ids.js";
export { formatIssues, type LabSpecResult, labSpecDigest, loadLabSpec, parseLabSpec } from "./parse-spec.js";
export {
  type DeletedMachine,
  type HostsUpdate,
  type LabPlan,
  machineDigest,
  type PlannedMachine,
  type PlannedNetwork,
  type PlanOptions,
  planLab,
  planLabDown,
} from "./plan.js";
export type * from "./spec-types.js";
