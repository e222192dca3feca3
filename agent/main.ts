/**
 * `protoctl agent`: opens the pool, re-adopts machines, cleans what a killed
 * predecessor left half-made, serves AgentService, and (with --controller)
 * joins the cluster. `startAgent` is the same thing in-process, for tests.
 */

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import type { ServerCredentials, ServerInterceptor } from "@grpc/grpc-js";
import { Command, Option } from "commander";
import type { Logger } from "pino";
import { failedPrecondition, ProtoctlError } from "../common/errors.js";
import { launchedWith } from "../common/launch-flags.js";
import { createLogger } from "../common/logger.js";
import { AGENT_HEAP_FLAGS, type AgentConfig, labelsOf, loadAgentConfig, poolKind } from "./config.js";
import type { PoolDriver } from "./host/interfaces.js";
import { NspawnMachineDriver } from "./host/machines/nspawn-driver.js";
import { NetworkDriver } from "./host/networks/network-driver.js";
import { openPool } from "./host/pool/index.js";
import type { AgentMetricsEndpoint } from "./metrics/serve.js";
import { startAgentServer, stopAgentServer } from "./server/agent-server.js";
import type { AgentContext } from "./server/context.js";
import { agentInfo } from "./server/info-handlers.js";
import { propagationHandlers } from "./server/propagation-handlers.js";
import { EnvService } from "./service/env-service.js";
import { ForegroundActivity } from "./service/foreground.js";
import { PropagationService } from "./service/propagation-service.js";
import { teardownCommand } from "./teardown.js";

export const AGENT_VERSION = "0.1.0";

export interface RunningAgent {
  address: string;
  /** Full URL of the Prometheus endpoint ("" when metrics.listen is off). */
  metricsUrl: string;
  ctx: AgentContext;
  /** Stops serving; machines keep running (they outlive the agent by design). */
  stop(): Promise<void>;
}

export interface StartAgentOptions {
  credentials?: ServerCredentials;
  interceptors?: ServerInterceptor[];
}

export async function startAgent(
  config: AgentConfig,
  logger: Logger,
  opts: StartAgentOptions = {},
): Promise<RunningAgent> {
  const log = logger.child({ node: config.name });
  checkAgentTransport(config, opts, log);
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const btrfsPool = await openPool(
    {
      kind: poolKind(config),
      stateDir: config.stateDir,
      sizeBytes: config.pool.sizeBytes,
      path: config.pool.path || undefined,
    },
    log,
  );
  const pool: PoolDriver = btrfsPool;
  // Propagation first: attached base versions must be registered before envs on them are re-adopted.
  // env creates go first; the publish at seal waits for a quiet moment
  const activity = new ForegroundActivity();
  const propagation = new PropagationService({
    activity,
    node: config.name,
    dir: join(config.stateDir, "propagation"),
    pool: btrfsPool,
    bindAddress: clusterHost(config.advertise || config.listen),
    // A pool on tmpfs keeps env writes in memory: sprouts of attached versions do too.
    sproutTmpfsBytes: poolKind(config) === "tmpfs" ? config.pool.sizeBytes : undefined,
    log,
  });
  await propagation.restore();
  const networks = new NetworkDriver();
  const machines = new NspawnMachineDriver({
    node: config.name,
    stateDir: config.stateDir,
    logger: log,
    networks,
    privateRange: config.network.privateRange,
  });
  const envs = new EnvService({
    node: config.name,
    stateDir: config.stateDir,
    pool,
    machines,
    logger: log,
    activity,
  });
  await envs.init();
  const ctx: AgentContext = {
    node: config.name,
    version: AGENT_VERSION,
    labels: labelsOf(config),
    poolKind: poolKind(config),
    pool,
    machines,
    networks,
    envs,
    logger: log,
    propagation,
  };

  let credentials = opts.credentials;
  let interceptors = opts.interceptors;
  let tlsMaterial: Awaited<ReturnType<typeof import("./membership/index.js").joinCluster>>;
  const membershipMod = config.controller ? await import("./membership/index.js") : undefined;
  if (membershipMod && !config.insecure && !credentials) {
    // join first: the cluster's CA signs our certificate, which the server then presents
    const tlsMod = await import("../common/tls.js");
    tlsMaterial = await membershipMod.joinCluster({
      controller: config.controller,
      token: config.joinToken,
      name: config.name,
      address: config.advertise || config.listen,
      labels: ctx.labels,
      credentials: { dir: join(config.stateDir, "tls") },
      log,
    });
    if (tlsMaterial) {
      credentials = tlsMod.serverCredentials(tlsMaterial, { clientAuth: "require" });
      interceptors = [tlsMod.controllerOnly(tlsMaterial.caPem)];
    }
  }
  if (!credentials && !config.insecure) {
    // the controller gave no certificate (a token without the CA fingerprint): never serve plaintext silently
    await propagation.close();
    await pool.close();
    throw noTlsMaterial("the join returned no TLS material (the token carries no CA fingerprint)");
  }
  if (tlsMaterial) {
    const tlsDir = join(config.stateDir, "tls");
    propagation.setTls({
      caFile: join(tlsDir, "ca.crt"),
      certFile: join(tlsDir, "node.crt"),
      keyFile: join(tlsDir, "node.key"),
    });
  }
  ctx.transport = credentials ? "mtls" : "plaintext";
  propagation.resume();
  // prom-client (and its default collectors) only when metrics are served: ~8 MB of RSS otherwise
  const metricsMod = config.metrics.listen ? await loadMetrics() : undefined;
  const { server, address } = await startAgentServer({
    ctx,
    stateDir: config.stateDir,
    listen: config.listen,
    credentials,
    interceptors: [
      ...(metricsMod ? [metricsMod.agentMetricsInterceptor(config.name)] : []),
      ...(interceptors ?? []),
    ],
    maxUploadBytes: config.maxUploadBytes,
    propagation: propagationHandlers(ctx, propagation),
  });
  const metrics: AgentMetricsEndpoint = metricsMod
    ? await metricsMod.startAgentMetrics(ctx, config.metrics, tlsMaterial).catch(async (err) => {
        await stopAgentServer(server);
        throw err;
      })
    : NO_METRICS;
  log.info({ address, metrics: metrics.url || undefined }, "agent serving");

  let membership: { stop(): Promise<void>; refresh(): void } | undefined;
  if (membershipMod) {
    try {
      membership = await membershipMod.startMembership({
        controller: config.controller,
        token: config.joinToken,
        name: config.name,
        address: config.advertise || address,
        labels: ctx.labels,
        credentials: tlsMaterial ? { tls: tlsMaterial } : { insecure: true },
        info: () => agentInfo(ctx),
        log,
      });
      const m = membership;
      envs.watch(() => m.refresh());
      propagation.onChange = () => {
        metrics.observe();
        m.refresh();
      };
    } catch (err) {
      await metrics.close();
      await stopAgentServer(server);
      throw err;
    }
  }

  return {
    address,
    ctx,
    metricsUrl: metrics.url,
    async stop() {
      await metrics.close();
      await membership?.stop();
      await stopAgentServer(server);
      await propagation.close();
      await pool.close();
    },
  };
}

/** metrics.listen off: nothing is counted, nothing to serve. */
const NO_METRICS: AgentMetricsEndpoint = { url: "", observe: () => undefined, close: async () => undefined };

async function loadMetrics() {
  const [serve, source] = await Promise.all([import("./metrics/serve.js"), import("./metrics/source.js")]);
  return {
    startAgentMetrics: serve.startAgentMetrics,
    agentMetricsInterceptor: source.agentMetricsInterceptor,
  };
}

/**
 * AgentService runs commands as root in envs: it is served over mutual TLS
 * (certificate from the join, or given by the caller) or, with an explicit
 * --insecure, in plaintext with a warning. Anything else refuses to start.
 */
function checkAgentTransport(config: AgentConfig, opts: StartAgentOptions, log: Logger): void {
  if (config.insecure) {
    log.warn(
      { listen: config.listen },
      "INSECURE: --insecure serves AgentService (root in every env) in plaintext without authentication",
    );
    return;
  }
  if (!opts.credentials && !config.controller)
    throw noTlsMaterial("no TLS material: no --controller to join and no credentials given");
}

function noTlsMaterial(why: string): ProtoctlError {
  return failedPrecondition(`refusing to serve AgentService in plaintext: ${why}`, {
    reason: "AGENT_NO_TLS",
    hint: "join a cluster (--controller and a --join-token from `protoctl node token`), or pass --insecure to accept plaintext without authentication (development only)",
  });
}

/** The host part of "host:port" (the agent's cluster address); loopback for unix sockets. */
function clusterHost(addr: string): string {
  if (!addr || addr.startsWith("unix:")) return "127.0.0.1";
  const host = addr.slice(0, addr.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  return host === "0.0.0.0" || host === "::" || host === "" ? "127.0.0.1" : host;
}

/**
 * No TurboFan in the agent (set here: V8 refuses --no-opt in NODE_OPTIONS).
 * Its JavaScript is glue between gRPC and processes (bytes move in native
 * code: pipes, btrfs, the kernel); the interpreter and Sparkplug run it, and
 * the optimizing compiler's code and zones are never touched. Measured
 * (fresh agent, this machine): RSS 79.6-80.1 → 77.4-77.6 MB; env create
 * unchanged within noise (bench/env-create).
 */
function noOptimizingCompiler(): void {
  setFlagsFromString("--no-opt");
}

/** True when node was started with the heap flags (argv or NODE_OPTIONS; --no-opt is set here anyway). */
function launchedWithAgentFlags(): boolean {
  return launchedWith(AGENT_HEAP_FLAGS);
}

/** Flags → dotted config keys (only those given). */
function flagsOf(o: Record<string, unknown>): Record<string, unknown> {
  const map: Record<string, string> = {
    name: "name",
    listen: "listen",
    advertise: "advertise",
    controller: "controller",
    joinToken: "joinToken",
    stateDir: "stateDir",
    poolKind: "pool.kind",
    poolSize: "pool.sizeBytes",
    poolPath: "pool.path",
    labels: "labels",
    privateRange: "network.privateRange",
    insecure: "insecure",
    logLevel: "log.level",
    metricsListen: "metrics.listen",
    metricsTls: "metrics.tls",
  };
  const out: Record<string, unknown> = {};
  for (const [k, key] of Object.entries(map)) if (o[k] !== undefined) out[key] = o[k];
  return out;
}

export function agentCommand(): Command {
  return (
    new Command("agent")
      .description("run the node agent: pool, environments and AgentService over gRPC")
      .option("--config <file>", "YAML configuration file")
      .option("--name <name>", "node name (default: the host name)")
      .option("--listen <addr>", "AgentService address host:port or unix:///path (default 127.0.0.1:7444)")
      .option("--advertise <addr>", "address the controller should dial (default: --listen)")
      .option("--controller <addr>", "controller address(es) to join, comma separated")
      // the systemd unit reads it from an EnvironmentFile (mode 0600), so it is not in argv or agent.yaml
      .addOption(
        new Option("--join-token <token>", "join token from `protoctl node token`").env(
          "PROTOCTL_AGENT_JOIN_TOKEN",
        ),
      )
      .option("--state-dir <dir>", "state directory (default /var/lib/protoctl/agent)")
      .option("--pool-kind <kind>", "tmpfs | file | mount (default tmpfs)")
      .option("--pool-size <size>", "pool size for tmpfs/file pools, e.g. 4G (default 4G)")
      .option("--pool-path <path>", "image file (file pools) or existing btrfs mount (mount pools)")
      .option("--labels <k=v,...>", "node labels")
      .option("--private-range <cidr>", "addresses for private envs that name none (default 10.213.0.0/16)")
      .option(
        "--insecure",
        "serve and join in plaintext without authentication (development only; logged as a warning)",
      )
      .option("--log-level <level>", "log level (default info)")
      .option(
        "--metrics-listen <host:port>",
        "serve Prometheus metrics here (plain HTTP on loopback unless --metrics-tls)",
      )
      .option("--metrics-tls", "serve metrics over HTTPS; scrapers need a certificate from the cluster CA")
      .addCommand(teardownCommand())
      .action(async (o: Record<string, unknown>) => {
        noOptimizingCompiler();
        const config = loadAgentConfig({ file: o.config as string | undefined, flags: flagsOf(o) });
        const logger = createLogger({
          name: "agent",
          level: config.log.level || undefined,
          format: config.log.format || undefined,
        });
        if (!launchedWithAgentFlags()) {
          logger.info(
            { flags: AGENT_HEAP_FLAGS.join(" ") },
            "node runs without the agent's heap flags: RSS will be higher (set NODE_OPTIONS)",
          );
        }
        let agent: RunningAgent;
        try {
          agent = await startAgent(config, logger);
        } catch (err) {
          const e = ProtoctlError.from(err);
          logger.error({ err: e, reason: e.reason, hint: e.hint }, "agent failed to start");
          process.exitCode = 1;
          return;
        }
        await new Promise<void>((resolve) => {
          const bye = () => resolve();
          process.once("SIGINT", bye);
          process.once("SIGTERM", bye);
        });
        logger.info("stopping (machines keep running)");
        await agent.stop();
        logger.flush?.();
        process.exit(0);
      })
  );
}
