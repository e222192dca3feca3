/**
 * One controller replica: store, cluster identity and CA, gRPC server
 * (every replica serves the API), leader election (the leader runs the
 * loops). `startController` is what `protoctl controller` runs and what
 * in-process tests call.
 */

import { randomUUID } from "node:crypto";
import { access, lstat, mkdir, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { Server, type ServerInterceptor } from "@grpc/grpc-js";
import { invalidArgument } from "../common/errors.js";
import { GRPC_BASE_OPTIONS, GRPC_SERVER_LIMITS } from "../common/grpc.js";
import type { Logger } from "../common/logger.js";
import {
  type CertificateAuthority,
  createCa,
  fingerprint,
  issue,
  loadOrCreateCaDir,
  serverCredentials,
  writeCredentialFile,
} from "../common/tls.js";
import { ControlServiceService } from "../proto/gen/protoctl/v1/control.js";
import { AgentClients } from "./agents/clients.js";
import type { ControllerConfig } from "./config.js";
import { startConsole } from "./console/server.js";
import type { ControllerContext, ControllerTls } from "./context.js";
import { checkControlPlaneTrust } from "./etcd-trust.js";
import { LeaderElection } from "./leader.js";
import { controllerMetricsInterceptor, leadershipChanged } from "./metrics/instrument.js";
import { startControllerMetrics } from "./metrics/serve.js";
import { ReconcileManager } from "./reconcile/manager.js";
import { controlInterceptor } from "./server/auth-interceptor.js";
import { controlService } from "./server/control-service.js";
import { EnvStatusWaiter } from "./server/env-watch.js";
import { plainJson } from "./store/codec.js";
import { ClusterStore } from "./store/store.js";
import { IdentityDirectory } from "./users/directory.js";

export interface RunningController {
  /** host:port the API listens on (the real port when listen asked for :0). */
  address: string;
  id: string;
  store: ClusterStore;
  isLeader(): boolean;
  /** The leader's loops, while this replica leads (tests, bench). */
  manager(): ReconcileManager | undefined;
  /** Path of the admin credential file (TLS on). */
  adminCredentialFile?: string;
  caPem?: string;
  /** Full URL of the Prometheus endpoint ("" when metrics.listen is off). */
  metricsUrl: string;
  /** Full URL of the web console ("" when console.listen is off). */
  consoleUrl: string;
  stop(): Promise<void>;
}

export async function startController(config: ControllerConfig, log: Logger): Promise<RunningController> {
  if (!["disk", "etcd"].includes(config.tls.caStore)) {
    throw invalidArgument(`tls.caStore must be disk or etcd, not ${JSON.stringify(config.tls.caStore)}`, {
      reason: "CONFIG_INVALID",
    });
  }
  await checkControlPlaneTrust(config, log);
  const store = new ClusterStore({
    endpoints: config.etcd.endpoints,
    prefix: config.etcd.prefix,
    tls: { caFile: config.etcd.caFile, certFile: config.etcd.certFile, keyFile: config.etcd.keyFile },
    writer: config.id,
    eventTtlSeconds: config.events.ttlSeconds,
  });
  try {
    return await start(config, log, store);
  } catch (err) {
    await store.close();
    throw err;
  }
}

async function start(config: ControllerConfig, log: Logger, store: ClusterStore): Promise<RunningController> {
  const clusterId = await ensureClusterId(store);
  const tls = config.insecure ? undefined : await setupTls(config, store, log);
  const agents = new AgentClients(() => tls?.self);
  let manager: ReconcileManager | undefined;
  const leaderRef: { current?: LeaderElection } = {};
  const ctx: ControllerContext = {
    id: config.id,
    config,
    store,
    log,
    tls,
    agents,
    leader: {
      isLeader: () => leaderRef.current?.isLeader() ?? false,
      leaderId: () => leaderRef.current?.leaderId() ?? "",
    },
  };
  const leader = new LeaderElection(
    store,
    config.id,
    config.reconcile.electionTtlSeconds,
    {
      onElected: async (fence) => {
        leadershipChanged(true);
        const m = new ReconcileManager(ctx, fence);
        manager = m;
        await m.start();
      },
      onDeposed: async () => {
        leadershipChanged(false);
        const m = manager;
        manager = undefined;
        await m?.stop();
      },
    },
    log,
  );
  leaderRef.current = leader;

  const directory = new IdentityDirectory(store, log);
  await directory.start();
  const interceptors: ServerInterceptor[] = [
    controllerMetricsInterceptor(),
    controlInterceptor({ caPem: tls?.ca.certPem, directory, store }),
  ];
  const server = new Server({
    ...GRPC_BASE_OPTIONS,
    interceptors,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    ...GRPC_SERVER_LIMITS,
  });
  const waiter = new EnvStatusWaiter(store);
  server.addService(
    ControlServiceService,
    controlService(ctx, waiter, () => clusterId, directory),
  );
  const creds = serverCredentials(
    tls
      ? { caPem: tls.ca.certPem, certPem: tls.self.certPem + tls.ca.certPem, keyPem: tls.self.keyPem }
      : undefined,
    { clientAuth: "request" },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(config.listen, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  for (const extra of config.extraListen) {
    if (extra.startsWith("unix:")) await removeStaleSocket(extra.replace(/^unix:(\/\/)?/, ""));
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(extra, creds, (err, p) => (err ? reject(err) : resolve(p))),
    );
  }
  const host = config.listen.slice(0, config.listen.lastIndexOf(":"));
  const address = `${host}:${port}`;
  const metrics = await startControllerMetrics(ctx, () => manager).catch((err) => {
    server.forceShutdown();
    throw err;
  });
  const consoleServer = config.console.listen
    ? await startConsole(ctx, directory, () => clusterId).catch(async (err) => {
        await metrics?.close();
        server.forceShutdown();
        throw err;
      })
    : undefined;
  ctx.consoleUrl = consoleServer?.url;
  await leader.start();

  let adminCredentialFile: string | undefined;
  if (tls) adminCredentialFile = await ensureAdminCredential(config, tls, address, log);

  log.info(
    {
      id: config.id,
      address,
      tls: !!tls,
      cluster: clusterId,
      metrics: metrics?.url,
      console: consoleServer?.url,
    },
    "controller serving",
  );

  return {
    address,
    id: config.id,
    store,
    isLeader: () => leader.isLeader(),
    manager: () => manager,
    adminCredentialFile,
    caPem: tls?.ca.certPem,
    metricsUrl: metrics?.url ?? "",
    consoleUrl: consoleServer?.url ?? "",
    stop: async () => {
      await consoleServer?.close();
      await metrics?.close();
      await leader.stop();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await waiter.close();
      await directory.stop();
      agents.close();
      await store.close();
      log.info({ id: config.id, txnBatches: store.batcher.stats }, "controller stopped");
    },
  };
}

async function ensureClusterId(store: ClusterStore): Promise<string> {
  const codec = plainJson<{ id: string; createdMs: number }>();
  const r = await store.kv.update(store.keys.cluster("id"), codec, (cur) =>
    cur ? undefined : { id: randomUUID(), createdMs: Date.now() },
  );
  return r!.value.id;
}

/** The cluster CA (disk or etcd, created by the first replica) and this replica's certificate. */
async function setupTls(config: ControllerConfig, store: ClusterStore, log: Logger): Promise<ControllerTls> {
  let ca: CertificateAuthority;
  if (config.tls.caStore === "disk") {
    ca = await loadOrCreateCaDir(join(config.stateDir, "ca"));
  } else {
    const codec = plainJson<CertificateAuthority>();
    const key = store.keys.cluster("ca-key");
    let cur = await store.kv.get(key, codec);
    if (!cur) {
      const fresh = await createCa();
      // first writer wins: two replicas starting together agree on one CA
      await store.kv.update(key, codec, (c) => (c ? undefined : fresh));
      cur = await store.kv.get(key, codec);
      if (cur?.value.certPem === fresh.certPem) log.info("created the cluster CA (kept in etcd)");
    }
    ca = cur!.value;
  }
  const listenHost = config.listen.slice(0, config.listen.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  const advHost = config.advertise.slice(0, config.advertise.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  const sans = [
    ...new Set([
      "protoctl-controller",
      "localhost",
      "127.0.0.1",
      listenHost,
      advHost,
      ...config.tls.serverNames,
    ]),
  ].filter((s) => s && s !== "0.0.0.0" && s !== "::");
  const self = await issue(ca, { cn: certName(config.id), role: "controller", sans, days: 365 });
  return { ca, self: { caPem: ca.certPem, ...self }, caFingerprint: fingerprint(ca.certPem) };
}

function certName(id: string): string {
  return (
    id
      .replace(/[^a-zA-Z0-9._-]/g, "-")
      .replace(/^[^a-zA-Z0-9]+/, "")
      .slice(0, 63) || "controller"
  );
}

/** Writes stateDir/admin.json (an admin client credential) and stateDir/ca.crt on first start. */
async function ensureAdminCredential(
  config: ControllerConfig,
  tls: ControllerTls,
  address: string,
  log: Logger,
): Promise<string> {
  const file = join(config.stateDir, "admin.json");
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await writeFile(join(config.stateDir, "ca.crt"), tls.ca.certPem);
  try {
    await access(file);
    return file;
  } catch {
    // first start: issue it
  }
  const admin = await issue(tls.ca, { cn: "admin", role: "admin", days: 825 });
  await writeCredentialFile(file, {
    controller: config.advertise.endsWith(":0") ? address : config.advertise,
    caPem: tls.ca.certPem,
    certPem: admin.certPem,
    keyPem: admin.keyPem,
    serverName: "protoctl-controller",
  });
  log.info({ file }, "wrote the admin credential");
  return file;
}

/**
 * A unix socket left by a controller that died (SIGKILL leaves the file):
 * removed when nothing accepts on it, so the next start can bind. A live
 * listener keeps it, and the bind fails as it should.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isSocket()) return;
  const live = await new Promise<boolean>((resolve) => {
    const sock = connect(path);
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
  if (!live) await rm(path, { force: true });
}
