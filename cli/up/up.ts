/**
 * `protoctl up`: a whole cluster on this machine in one command. Starts a
 * detached supervisor (`protoctl supervise`) that runs etcd, then a
 * controller, then (once the controller issued a join token) a local agent
 * with a tmpfs pool; writes the CLI context; waits until the node is Ready.
 * A second `up` finds the supervisor alive, reports what runs and changes
 * nothing.
 */

import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { AGENT_ENV, AGENT_NODE_FLAGS } from "../../common/agent-launch.js";
import { CONTROLLER_NODE_FLAGS } from "../../common/controller-launch.js";
import { failedPrecondition, internal, ProtoctlError, unavailable } from "../../common/errors.js";
import { isValidName } from "../../common/names.js";
import { findExecutable } from "../../common/tools.js";
import type { Api } from "../client/connect.js";
import type { ContextEntry, ResolvedContext } from "../config/contexts.js";
import { bytes } from "../output/format.js";
import { controllerEtcdArgs, ensureEtcdPki, etcdHealthy, etcdPki, etcdTlsArgs } from "./etcd-pki.js";
import { migrateLegacyState, needsMigration } from "./migrate.js";
import { checkPorts } from "./ports.js";
import {
  type ChildrenFile,
  type ChildSpec,
  DEFAULT_STATE_DIR,
  readJson,
  readPid,
  runningSupervisor,
  StatePaths,
  secureStateDir,
  type UpRecord,
  writeJson,
} from "./state.js";

export interface UpOptions {
  stateDir: string;
  poolSize?: number;
  etcdPort: number;
  etcdPeerPort: number;
  controllerPort: number;
  agentPort: number;
  /** Web console (HTTPS) and the two Prometheus endpoints, on 127.0.0.1. */
  consolePort: number;
  controllerMetricsPort: number;
  agentMetricsPort: number;
  nodeName?: string;
  insecure: boolean;
  contextName: string;
  timeoutMs: number;
  /** The `protoctl` entry script (children run `node <cli> controller|agent|supervise`). */
  cliPath: string;
  say(line: string): void;
}

export const UP_DEFAULTS = {
  stateDir: DEFAULT_STATE_DIR,
  etcdPort: 2379,
  etcdPeerPort: 2380,
  controllerPort: 7443,
  agentPort: 7444,
  consolePort: 7445,
  controllerMetricsPort: 7446,
  agentMetricsPort: 7447,
  contextName: "local",
  timeoutMs: 120_000,
};

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** min(25% of MemAvailable, 8 GiB), rounded down to 64 MiB, at least 512 MiB. */
export function defaultPoolSize(meminfo = readFileSync("/proc/meminfo", "utf8")): number {
  const m = /^MemAvailable:\s+([0-9]+) kB/m.exec(meminfo);
  const avail = m ? Number(m[1]) * 1024 : 2 * GiB;
  const size = Math.min(Math.floor(avail / 4), 8 * GiB);
  return Math.max(512 * MiB, Math.floor(size / (64 * MiB)) * 64 * MiB);
}

/** A node name from the host name that passes the name rule, or "local". */
export function defaultNodeName(host = hostname()): string {
  const n = host
    .toLowerCase()
    .split(".")[0]!
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+/, "")
    .slice(0, 63);
  return isValidName(n) ? n : "local";
}

function logTail(paths: StatePaths, name: string, lines = 20): string {
  try {
    return readFileSync(paths.log(name), "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value, the deadline passes, or the supervisor died. */
async function waitFor<T>(
  what: string,
  paths: StatePaths,
  logName: string,
  deadline: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (!supervisorAlive(paths)) {
      throw internal(`the supervisor stopped while waiting for ${what}`, {
        reason: "UP_FAILED",
        hint: `see ${paths.log("supervise")} and ${paths.log(logName)}`,
        output: logTail(paths, logName),
      });
    }
    if (Date.now() > deadline) {
      const why = lastErr instanceof Error ? `: ${lastErr.message}` : "";
      throw unavailable(`timed out waiting for ${what}${why}`, {
        reason: "UP_TIMEOUT",
        hint: `see ${paths.log(logName)}; raise --timeout if this machine is slow`,
        output: logTail(paths, logName),
      });
    }
    await sleep(250);
  }
}

function childrenFor(o: UpOptions, paths: StatePaths, joinToken: string | undefined): ChildSpec[] {
  const node = process.execPath;
  const pki = etcdPki(paths);
  const children: ChildSpec[] = [
    {
      name: "etcd",
      command: "etcd",
      args: etcdTlsArgs(o, paths.etcdDir, pki),
      stopTimeoutMs: 10_000,
    },
    {
      name: "controller",
      command: node,
      // heap flags only take effect at launch (common/controller-launch.ts)
      args: [
        ...CONTROLLER_NODE_FLAGS,
        o.cliPath,
        "controller",
        "--listen",
        `127.0.0.1:${o.controllerPort}`,
        ...controllerEtcdArgs(o.etcdPort, pki),
        "--state-dir",
        paths.controllerDir,
        "--id",
        "local",
        "--metrics-listen",
        `127.0.0.1:${o.controllerMetricsPort}`,
        ...(o.insecure ? ["--insecure"] : ["--console-listen", `127.0.0.1:${o.consolePort}`]),
      ],
      env: { PROTOCTL_LOG_FORMAT: "json" },
      stopTimeoutMs: 15_000,
    },
  ];
  if (joinToken !== undefined) {
    children.push({
      name: "agent",
      command: node,
      // Heap flags only take effect at launch: they keep the agent's RSS low (bench/env-create).
      args: [
        ...AGENT_NODE_FLAGS,
        o.cliPath,
        "agent",
        "--name",
        o.nodeName!,
        "--listen",
        `127.0.0.1:${o.agentPort}`,
        "--advertise",
        `127.0.0.1:${o.agentPort}`,
        "--controller",
        `127.0.0.1:${o.controllerPort}`,
        "--state-dir",
        paths.agentDir,
        "--pool-kind",
        "tmpfs",
        "--pool-size",
        String(o.poolSize),
        "--metrics-listen",
        `127.0.0.1:${o.agentMetricsPort}`,
        ...(joinToken ? ["--join-token", joinToken] : []),
        ...(o.insecure ? ["--insecure"] : []),
      ],
      env: { PROTOCTL_LOG_FORMAT: "json", ...AGENT_ENV },
      // The agent stops its envs and unmounts its pool on SIGTERM: give it time.
      stopTimeoutMs: 60_000,
    });
  }
  return children;
}

/** The context `up` writes: inline credentials from the controller's admin.json, or insecure. */
export function localContext(
  o: Pick<UpOptions, "controllerPort" | "insecure">,
  paths: StatePaths,
): ContextEntry {
  const controller = `127.0.0.1:${o.controllerPort}`;
  if (o.insecure) return { controller, insecure: true };
  const cred = readJson<{ caPem: string; certPem: string; keyPem: string; serverName?: string }>(
    paths.adminCredential,
  );
  if (!cred)
    throw internal(`the controller did not write ${paths.adminCredential}`, { reason: "NO_CREDENTIAL" });
  return {
    controller,
    caData: cred.caPem,
    certData: cred.certPem,
    keyData: cred.keyPem,
    ...(cred.serverName ? { serverName: cred.serverName } : {}),
  };
}

async function connectLocal(entry: ContextEntry): Promise<Api> {
  const { connect } = await import("../client/connect.js");
  const ctx: ResolvedContext = { ...entry, name: "local", source: "context" };
  return connect(ctx);
}

/** Waits until the node is listed and Ready; returns its description. */
async function waitNodeReady(api: Api, o: UpOptions, paths: StatePaths, deadline: number): Promise<string> {
  const { NodeState } = await import("../../proto/gen/protoctl/v1/types.js");
  return waitFor(`node ${o.nodeName} to be Ready`, paths, "agent", deadline, async () => {
    const res = await api.unary("listNodes", {}, { deadlineMs: 5000 });
    const n = res.nodes.find((x) => x.name === o.nodeName);
    return n && n.state === NodeState.NODE_STATE_READY ? `node ${n.name} Ready` : undefined;
  });
}

async function saveContext(name: string, entry: ContextEntry): Promise<void> {
  const { loadCliConfig, saveCliConfig } = await import("../config/contexts.js");
  const cfg = await loadCliConfig();
  cfg.contexts[name] = entry;
  cfg.currentContext = name;
  await saveCliConfig(cfg);
}

/** Starts the detached supervisor, its output going to logs/supervise.log. */
/** The supervisor `up` just spawned (its pid file may not be written yet). */
let spawnedSupervisor: number | undefined;

function supervisorAlive(paths: StatePaths): boolean {
  if (runningSupervisor(paths)) return true;
  if (!spawnedSupervisor) return false;
  try {
    process.kill(spawnedSupervisor, 0);
    return true;
  } catch {
    return false;
  }
}

async function startSupervisor(o: UpOptions, paths: StatePaths): Promise<void> {
  const { spawnProcess } = await import("../../common/exec.js");
  const log = { file: paths.log("supervise"), append: true } as const;
  const child = spawnProcess(process.execPath, [o.cliPath, "supervise", "--state-dir", paths.root], {
    detached: true,
    stdin: "ignore",
    stdout: log,
    stderr: log,
    buffer: false,
    reject: false,
    cleanup: false,
  });
  child.catch(() => undefined);
  child.unref();
  spawnedSupervisor = child.pid;
}

export async function up(o: UpOptions): Promise<void> {
  const paths = new StatePaths(o.stateDir);
  const recorded = readJson<UpRecord>(paths.upFile);
  const pid = runningSupervisor(paths);
  if (pid && recorded) return alreadyUp(o, paths, recorded, pid);

  // ---- preflight: nothing is started before these pass ----
  if (process.getuid?.() !== 0) {
    throw failedPrecondition("protoctl up needs root (btrfs pool, loop devices, systemd-nspawn)", {
      reason: "NOT_ROOT",
      hint: "run it with sudo",
    });
  }
  if (!(await findExecutable("etcd", process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"))) {
    throw failedPrecondition("the etcd binary is not installed", {
      reason: "ETCD_MISSING",
      hint: "apt-get install etcd-server (or see `protoctl doctor`)",
    });
  }
  await checkPorts(o);
  o.nodeName ??= defaultNodeName();
  o.poolSize ??= defaultPoolSize();

  await secureStateDir(paths);
  if (needsMigration(paths)) {
    const keyFile = await migrateLegacyState(o, paths);
    if (keyFile) o.say(`migrated this state dir: the cluster CA key moved from etcd to ${keyFile} (0600)`);
  }
  const pki = etcdPki(paths);
  await ensureEtcdPki(pki);
  const record: UpRecord = {
    version: 1,
    stateDir: paths.root,
    nodeName: o.nodeName,
    etcdPort: o.etcdPort,
    etcdPeerPort: o.etcdPeerPort,
    controllerPort: o.controllerPort,
    agentPort: o.agentPort,
    consolePort: o.consolePort,
    controllerMetricsPort: o.controllerMetricsPort,
    agentMetricsPort: o.agentMetricsPort,
    poolSizeBytes: o.poolSize,
    insecure: o.insecure,
    contextName: o.contextName,
    startedMs: Date.now(),
  };
  await writeJson(paths.upFile, record);
  await writeJson(paths.childrenFile, { children: childrenFor(o, paths, undefined) } satisfies ChildrenFile);

  if (o.insecure)
    o.say("WARNING: --insecure: the controller and the agent serve plaintext without authentication");
  const deadline = Date.now() + o.timeoutMs;
  let api: Api | undefined;
  try {
    o.say(
      `starting etcd (https://127.0.0.1:${o.etcdPort}, client certificates only) and the controller (127.0.0.1:${o.controllerPort})`,
    );
    await startSupervisor(o, paths);
    await waitFor("etcd", paths, "etcd", deadline, async () =>
      (await etcdHealthy(o.etcdPort, pki)) ? true : undefined,
    );
    const entry = await waitFor("the controller's credentials", paths, "controller", deadline, async () =>
      o.insecure || existsSync(paths.adminCredential) ? localContext(o, paths) : undefined,
    );
    api = await connectLocal(entry);
    const a = api;
    await waitFor("the controller", paths, "controller", deadline, () =>
      a.unary("getVersion", {}, { deadlineMs: 2000 }),
    );
    let token = "";
    try {
      // single use, for this machine's node name only; `replace` lets an agent without its
      // certificate (insecure, or state lost) take its own name back on a later `up`
      const req = { ttlSeconds: 3600, labels: {}, uses: 1, reusable: false, node: o.nodeName, replace: true };
      token = (await a.unary("createJoinToken", req, { deadlineMs: 10_000 })).token;
    } catch (err) {
      // An insecure controller may not issue tokens; the agent joins without one then.
      if (!o.insecure) throw err;
    }
    o.say(
      `starting the agent: node ${o.nodeName}, tmpfs pool ${bytes(o.poolSize)} (127.0.0.1:${o.agentPort})`,
    );
    await writeJson(paths.childrenFile, { children: childrenFor(o, paths, token) } satisfies ChildrenFile);
    process.kill(runningSupervisor(paths) ?? spawnedSupervisor!, "SIGHUP");
    await saveContext(o.contextName, entry);
    const ready = await waitNodeReady(a, o, paths, deadline);
    o.say(
      `protoctl is up: controller 127.0.0.1:${o.controllerPort}, ${ready}; context "${o.contextName}" is current`,
    );
    for (const line of urlLines(record)) o.say(line);
    o.say(
      `logs: ${paths.logDir}   stop: protoctl down${paths.root === DEFAULT_STATE_DIR ? "" : ` --state-dir ${paths.root}`}`,
    );
  } catch (err) {
    api?.close();
    api = undefined;
    // Leave nothing half-started behind.
    const { down } = await import("./down.js");
    const keepLogs = ProtoctlError.from(err);
    await down({ stateDir: paths.root, keep: true, quiet: true, say: () => undefined }).catch(
      () => undefined,
    );
    throw keepLogs;
  } finally {
    api?.close();
  }
}

async function alreadyUp(o: UpOptions, paths: StatePaths, rec: UpRecord, pid: number): Promise<void> {
  const pids = ["etcd", "controller", "agent"].map((n) => {
    const p = readPid(paths.pidFile(n));
    return `${n} ${p ? `(pid ${p})` : "(starting)"}`;
  });
  o.say(`protoctl is already up (supervisor pid ${pid}): ${pids.join(", ")}`);
  const differs =
    (o.nodeName && o.nodeName !== rec.nodeName) ||
    o.controllerPort !== rec.controllerPort ||
    o.etcdPort !== rec.etcdPort ||
    o.agentPort !== rec.agentPort;
  if (differs) o.say("note: it runs with the settings of the first `up`; run `protoctl down` to change them");
  if (needsMigration(paths))
    o.say(
      "note: it runs etcd in plaintext with the CA key in etcd (an older `up`); `protoctl down --keep && protoctl up` migrates it",
    );
  const entry = localContext({ controllerPort: rec.controllerPort, insecure: rec.insecure }, paths);
  const api = await connectLocal(entry);
  try {
    const ready = await waitNodeReady(api, { ...o, nodeName: rec.nodeName }, paths, Date.now() + o.timeoutMs);
    o.say(
      `controller 127.0.0.1:${rec.controllerPort}, ${ready}, pool ${bytes(rec.poolSizeBytes)}; nothing changed`,
    );
    for (const line of urlLines(rec)) o.say(line);
  } finally {
    api.close();
  }
}

/** The console's and the metrics endpoints' URLs, one full URL per line (an older up record has none). */
export function urlLines(
  rec: Pick<UpRecord, "insecure" | "consolePort" | "controllerMetricsPort" | "agentMetricsPort">,
): string[] {
  const out: string[] = [];
  if (rec.consolePort && !rec.insecure)
    out.push(`console: https://127.0.0.1:${rec.consolePort}/ (sign in: protoctl console)`);
  if (rec.controllerMetricsPort)
    out.push(`controller metrics: http://127.0.0.1:${rec.controllerMetricsPort}/metrics`);
  if (rec.agentMetricsPort) out.push(`agent metrics: http://127.0.0.1:${rec.agentMetricsPort}/metrics`);
  return out;
}
