/**
 * Controller configuration: defaults < YAML file (--config) <
 * PROTOCTL_CONTROLLER_* environment < flags. See deploy/controller.yaml.
 */
import { hostname } from "node:os";
import { loadConfig } from "../common/config.js";

export const CONTROLLER_DEFAULTS = {
  listen: "127.0.0.1:7443",
  /** More addresses to serve the same API on, e.g. unix:///run/protoctl/controller.sock. */
  extraListen: [] as string[],
  /** Address agents and CLIs use to reach this replica (defaults to listen). */
  advertise: "",
  id: "",
  stateDir: "/var/lib/protoctl/controller",
  insecure: false,
  etcd: {
    endpoints: ["http://127.0.0.1:2379"],
    prefix: "/protoctl/v1/",
    /** Client TLS towards etcd (https:// endpoints): CA, and cert + key when etcd checks clients. */
    caFile: "",
    certFile: "",
    keyFile: "",
    /**
     * Accept keeping the CA key (tls.caStore: etcd) in an etcd that does not
     * require client certificates (controller/etcd-trust.ts). Development and tests only.
     */
    insecure: false,
  },
  tls: {
    /** Where the cluster CA lives: "disk" (stateDir/ca) or "etcd" (shared by all replicas). */
    caStore: "etcd",
    /** Extra DNS names / IPs for the controller certificate. */
    serverNames: [] as string[],
  },
  membership: {
    /** Node lease TTL: a silent agent's node turns NotReady after at most this long. */
    leaseTtlSeconds: 3,
    heartbeatIntervalMs: 1000,
  },
  reconcile: {
    /** Envs on a node NotReady for longer than this are marked Lost. */
    lostGraceSeconds: 30,
    concurrency: 64,
    agentTimeoutMs: 60_000,
    /** Leader election lease TTL: a dead leader is replaced after at most this long. */
    electionTtlSeconds: 3,
    backoffBaseMs: 200,
    backoffMaxMs: 30_000,
  },
  scheduler: {
    strategy: "spread",
    /** Allow placement on nodes lacking the base version (propagation hook). */
    propagation: true,
  },
  events: { ttlSeconds: 3600 },
  /** Prometheus endpoint (docs/metrics.md): "" off; plain HTTP on loopback only unless tls. */
  metrics: { listen: "", tls: false },
  /** Web console over HTTPS with the cluster certificate (docs/console.md): "" off; needs TLS on. */
  console: { listen: "" },
  envs: {
    /** Time to live of an env created without --ttl (0: none); `env extend` pushes it back. */
    defaultTtlSeconds: 0,
  },
  log: { level: "info", format: "auto", file: "" },
};

export type ControllerConfig = typeof CONTROLLER_DEFAULTS;

export function loadControllerConfig(
  file: string | undefined,
  flags: Record<string, unknown> = {},
): ControllerConfig {
  const cfg = loadConfig(CONTROLLER_DEFAULTS, {
    file,
    fileRequired: file !== undefined,
    envPrefix: "PROTOCTL_CONTROLLER",
    flags,
  });
  return finishConfig(cfg);
}

/** Fills derived values (id, advertise). */
export function finishConfig(cfg: ControllerConfig): ControllerConfig {
  const out = structuredClone(cfg);
  if (!out.id)
    out.id = `${hostname()
      .replace(/[^a-zA-Z0-9-]/g, "-")
      .slice(0, 40)}-${process.pid}`;
  if (!out.advertise) out.advertise = out.listen;
  return out;
}

/** A config for in-process use (tests): defaults with overrides, nested objects merged. */
export function controllerConfig(over: DeepPartial<ControllerConfig> = {}): ControllerConfig {
  return finishConfig(merge(structuredClone(CONTROLLER_DEFAULTS), over) as ControllerConfig);
}

export type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K];
};

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    const cur = a[k];
    if (
      cur &&
      typeof cur === "object" &&
      !Array.isArray(cur) &&
      v &&
      typeof v === "object" &&
      !Array.isArray(v)
    ) {
      merge(cur as Record<string, unknown>, v as Record<string, unknown>);
    } else a[k] = v;
  }
  return a;
}
