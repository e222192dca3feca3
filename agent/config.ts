/**
 * `protoctl agent` configuration: defaults < YAML file (--config) < env
 * PROTOCTL_AGENT_* < flags (common/config.ts). Sizes accept K/M/G.
 */
import { hostname } from "node:os";
import { type ConfigObject, loadConfig } from "../common/config.js";
import { invalidArgument } from "../common/errors.js";
import { validateName } from "../common/names.js";
import type { PoolKindName } from "./host/interfaces.js";
import { DEFAULT_PRIVATE_RANGE, parseRange } from "./host/networks/private-range.js";

export interface AgentConfig extends ConfigObject {
  name: string;
  listen: string;
  advertise: string;
  controller: string;
  joinToken: string;
  stateDir: string;
  pool: { kind: string; sizeBytes: number; path: string };
  /** "k=v" entries. */
  labels: string[];
  /** `privateRange`: where `private` envs without an address get a /32 (private-range.ts). */
  network: { privateRange: string };
  insecure: boolean;
  log: { level: string; format: string };
  /** Largest base upload accepted (bytes, K/M/G); 0: the pool's size. */
  maxUploadBytes: number;
  /** Prometheus endpoint (docs/metrics.md): "" off; plain HTTP on loopback only unless tls. */
  metrics: { listen: string; tls: boolean };
}

export const DEFAULT_STATE_DIR = "/var/lib/protoctl/agent";

/** How to launch `protoctl agent` (`up` launches it too, and the CLI imports no agent code). */
export { AGENT_ENV, AGENT_HEAP_FLAGS, AGENT_NODE_FLAGS } from "../common/agent-launch.js";

/** Node names must be protoctl names; the host name is lowered and cut to fit. */
export function defaultNodeName(host = hostname()): string {
  const n = host
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+/, "")
    .slice(0, 63);
  return n || "node";
}

export function agentDefaults(): AgentConfig {
  return {
    name: defaultNodeName(),
    listen: "127.0.0.1:7444",
    advertise: "",
    controller: "",
    joinToken: "",
    stateDir: DEFAULT_STATE_DIR,
    pool: { kind: "tmpfs", sizeBytes: 4 * 2 ** 30, path: "" },
    labels: [],
    network: { privateRange: DEFAULT_PRIVATE_RANGE },
    insecure: false,
    // empty: PROTOCTL_LOG_LEVEL / PROTOCTL_LOG_FORMAT, else info and auto (common/logger.ts)
    log: { level: "", format: "" },
    maxUploadBytes: 0,
    metrics: { listen: "", tls: false },
  };
}

export function loadAgentConfig(opts: {
  file?: string;
  env?: NodeJS.ProcessEnv;
  flags?: Record<string, unknown>;
}): AgentConfig {
  const cfg = loadConfig(agentDefaults(), {
    file: opts.file,
    fileRequired: opts.file !== undefined,
    envPrefix: "PROTOCTL_AGENT",
    env: opts.env,
    flags: opts.flags,
  });
  return checkAgentConfig(cfg);
}

export function checkAgentConfig(cfg: AgentConfig): AgentConfig {
  validateName("node", cfg.name);
  if (!["tmpfs", "file", "mount"].includes(cfg.pool.kind)) {
    throw invalidArgument(`pool kind must be tmpfs, file or mount, not ${JSON.stringify(cfg.pool.kind)}`, {
      reason: "CONFIG_INVALID",
    });
  }
  if (cfg.pool.kind === "mount" && !cfg.pool.path) {
    throw invalidArgument("a mount pool needs --pool-path (an existing btrfs mount)", {
      reason: "CONFIG_INVALID",
    });
  }
  if (cfg.pool.sizeBytes < 128 * 2 ** 20)
    throw invalidArgument("pool size below 128M", { reason: "CONFIG_INVALID" });
  labelsOf(cfg);
  parseRange(cfg.network.privateRange);
  return cfg;
}

export function poolKind(cfg: AgentConfig): PoolKindName {
  return cfg.pool.kind as PoolKindName;
}

/** ["k=v", …] → { k: "v" }; keys are names, values plain text. */
export function labelsOf(cfg: AgentConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of cfg.labels) {
    const m = /^([a-z0-9][a-z0-9./-]{0,62})=(.{0,253})$/.exec(l);
    if (!m)
      throw invalidArgument(`label ${JSON.stringify(l)} is not key=value`, { reason: "CONFIG_INVALID" });
    out[m[1]!] = m[2]!;
  }
  return out;
}
