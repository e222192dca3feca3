/**
 * What every part of one controller replica shares: its id and config, the
 * store, the logger, the cluster CA (when TLS is on), the agent client pool
 * and who leads.
 */
import type { Logger } from "../common/logger.js";
import type { CertificateAuthority, TlsMaterial } from "../common/tls.js";
import type { AgentClients } from "./agents/clients.js";
import type { ControllerConfig } from "./config.js";
import type { ClusterStore } from "./store/store.js";

export interface ControllerTls {
  ca: CertificateAuthority;
  /** This replica's own certificate (role controller), also used to call agents. */
  self: TlsMaterial & { certPem: string; keyPem: string };
  caFingerprint: string;
}

export interface LeaderState {
  isLeader(): boolean;
  /** Id of the current leader, "" when unknown. */
  leaderId(): string;
}

export interface ControllerContext {
  id: string;
  config: ControllerConfig;
  store: ClusterStore;
  log: Logger;
  tls?: ControllerTls;
  agents: AgentClients;
  leader: LeaderState;
  /** The web console's URL once it serves (GetVersion tells `protoctl console`). */
  consoleUrl?: string;
}
