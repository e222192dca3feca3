/** What the AgentService handlers share: the node's drivers and services. */
import type { Logger } from "pino";
import type { MachineDriver, PoolDriver } from "../host/interfaces.js";
import type { HostNetworks } from "../host/networks/host-networks.js";
import type { EnvService } from "../service/env-service.js";
import type { PropagationService } from "../service/propagation-service.js";

export interface AgentContext {
  node: string;
  version: string;
  labels: Record<string, string>;
  poolKind: "tmpfs" | "file" | "mount";
  pool: PoolDriver;
  machines: MachineDriver;
  networks: HostNetworks;
  envs: EnvService;
  logger: Logger;
  /** Seeds, exports, attachments (absent in tests that do not need them). */
  propagation?: PropagationService;
  /** How AgentService is served: reported as a capability, so `node describe` shows a plaintext agent. */
  transport?: "mtls" | "plaintext";
}
