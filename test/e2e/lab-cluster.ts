/**
 * A real cluster for lab tests and the lab-up bench: N network-namespace
 * hosts (test/fixtures/hosts.ts); h0 runs etcd and a controller (TLS, CA in
 * etcd), every host runs a real agent (`protoctl agent` process, btrfs pool
 * on tmpfs, systemd-nspawn) that joins with a token; busybox is imported on
 * every node. The test process talks to the controller over its unix socket.
 *
 * Processes enter a host with `nsenter --net` only (not `ip netns exec`,
 * which also unshares the mount namespace), so the agents' pool mounts stay
 * visible here and `stop()` can destroy them.
 *
 * `stop()` also cleans what agents leave behind on purpose or by dying: an
 * agent stopped with SIGTERM keeps its machines running, one killed with
 * SIGKILL also keeps its mounts. So, once every daemon is gone, each agent's
 * machine records are adopted (the agent's own driver) and their machines
 * stopped, mounts below its pool are unmounted deepest first, and the pool
 * is destroyed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NspawnMachineDriver } from "../../agent/host/machines/nspawn-driver.js";
import { ProtoctlError } from "../../common/errors.js";
import { silentLogger } from "../../common/logger.js";
import { clientCredentials, readCredentialFile } from "../../common/tls.js";
import {
  call,
  client,
  eventually,
  importBaseFromDir,
  REUSABLE,
  streamed,
} from "../support/controller/cluster.js";

export { execIn } from "../support/controller/cluster.js";

import type {
  ApplyLabRequest,
  ControlServiceClient,
  LabProgress,
} from "../../proto/gen/protoctl/v1/control.js";
import { type Event, NodeState } from "../../proto/gen/protoctl/v1/types.js";
import { createHosts, type TestHost, type TestHosts } from "../fixtures/hosts.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";
import { startHostEtcd } from "../support/controller/host-etcd.js";
import { sourceAgentCommand, sourceControllerCommand, waitLine } from "../support/controller/process.js";
import { cleanAgentDir, loopsUnder } from "../support/controller/propagation-cluster.js";

/** The checkout: daemons run from the TypeScript sources, also when this file runs compiled from dist/. */

export interface LabCluster {
  hosts: TestHosts;
  c: ControlServiceClient;
  /** Agent state dirs by node name. */
  agentDirs: Map<string, string>;
  /** Agent node names, one per host: a0-<suffix>, a1-<suffix>, … (unique per run) */
  nodes: string[];
  agents: Map<string, ChildProcess>;
  startAgent(i: number): ChildProcess;
  kill(p: ChildProcess, sig: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

export interface LabClusterOptions {
  hosts?: number;
  lostGraceSeconds?: number;
  poolSize?: string;
}

export async function startLabCluster(opts: LabClusterOptions = {}): Promise<LabCluster> {
  const n = opts.hosts ?? 3;
  const hosts = await createHosts(n);
  const dir = await mkdtemp(join(tmpdir(), "protoctl-lab-"));
  const rootfs = await mkdtemp(join(tmpdir(), "protoctl-rootfs-"));
  const children: ChildProcess[] = [];
  /** node → agent state dir */
  const agentDirs = new Map<string, string>();
  const agents = new Map<string, ChildProcess>();
  let c: ControlServiceClient | undefined;

  const inHost = (netns: string, args: string[]): ChildProcess => {
    const p = spawn("nsenter", [`--net=/run/netns/${netns}`, "--", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    p.stderr?.on("data", (b: Buffer) => {
      err = (err + b.toString()).slice(-4000);
      if (process.env.PROTOCTL_TEST_LOG) process.stderr.write(b);
    });
    (p as ChildProcess & { lastStderr: () => string }).lastStderr = () => err;
    children.push(p);
    return p;
  };
  const kill = (p: ChildProcess, sig: NodeJS.Signals): Promise<void> => {
    if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
    return new Promise((r) => {
      p.once("exit", () => r());
      p.kill(sig);
    });
  };
  const stop = async () => {
    c?.close();
    // Bases pushed by the scheduler: their attachments' loop devices, noted before the NBD
    // clients go (one over a lazily unmounted FUSE file loses its path).
    const loops = await loopsUnder([...agentDirs.values()].map((d) => `${d}/`));
    for (const p of [...agents.values()]) await kill(p, "SIGTERM");
    for (const p of children.reverse()) await kill(p, "SIGTERM");
    for (const [node, d] of agentDirs) {
      if (!existsSync(d)) continue;
      await stopLeftMachines(node, d);
      // env overlays, attachments (sprouts, seed loops, NBD clients and their proxies), the pool
      await cleanAgentDir(d, loops);
    }
    await hosts.cleanup();
    await rm(dir, { recursive: true, force: true });
    await rm(rootfs, { recursive: true, force: true });
  };

  try {
    await makeBusyboxRootfs(rootfs);
    const h0 = hosts.hosts[0]!;
    const { url: etcdUrl } = await startHostEtcd(hosts, h0, "lab", join(dir, "etcd"), (args) =>
      inHost(h0.netns, args),
    );
    const cfg = {
      id: "ctl-lab",
      listen: `${h0.address}:7443`,
      extraListen: [`unix://${join(dir, "ctl.sock")}`],
      stateDir: join(dir, "ctl"),
      // the fixture etcd is plaintext: keeping the CA key there is accepted explicitly
      etcd: { endpoints: [etcdUrl], prefix: "/protoctl/v1/", insecure: true },
      tls: { caStore: "etcd" },
      membership: { leaseTtlSeconds: 3, heartbeatIntervalMs: 1000 },
      reconcile: { electionTtlSeconds: 3, lostGraceSeconds: opts.lostGraceSeconds ?? 60 },
    };
    const ctl = inHost(h0.netns, sourceControllerCommand(cfg));
    await waitLine(ctl, /READY/, 90_000);
    const cred = await readCredentialFile(join(dir, "ctl", "admin.json"));
    c = client(
      `unix://${join(dir, "ctl.sock")}`,
      clientCredentials(cred, { serverName: "protoctl-controller" }),
    );
    const { token } = await call(c, "createJoinToken", { ttlSeconds: 3600, labels: {}, ...REUSABLE });
    // unique per run: agents of other test clusters on this kernel share the cgroup tree, and an
    // agent's start-up sweep ends the cgroups under its node name that it has no record of
    const nodes = hosts.hosts.map((_, i) => `a${i}-${hosts.suffix}`);
    const startAgent = (i: number): ChildProcess => {
      const h = hosts.hosts[i]!;
      const name = nodes[i]!;
      const stateDir = join(dir, `agent-${name}`);
      agentDirs.set(name, stateDir);
      const p = inHost(
        h.netns,
        sourceAgentCommand({
          name,
          listen: `${h.address}:7444`,
          controller: `${h0.address}:7443`,
          token,
          stateDir,
          poolSize: opts.poolSize,
        }),
      );
      agents.set(name, p);
      return p;
    };
    for (let i = 0; i < n; i++) startAgent(i);
    await eventually(async () => (await readyNodes(c!)) === n, 90_000, 200);
    for (const node of nodes) await importBaseFromDir(c, node, "busybox", rootfs);
    await eventually(
      async () => (await call(c!, "getBase", { name: "busybox" })).versions[0]?.nodes.length === n,
      30_000,
      100,
    );
    return { hosts, c, agentDirs, nodes, agents, startAgent, kill, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Machines an agent left running (SIGTERM keeps them, SIGKILL too): adopted from its records, stopped. */
export async function stopLeftMachines(node: string, stateDir: string): Promise<void> {
  if (!existsSync(join(stateDir, "machines"))) return;
  const m = new NspawnMachineDriver({ node, stateDir, logger: silentLogger() });
  for (const s of await m.adopt().catch(() => [])) {
    if (s.running) await m.stop(s.name, { timeoutMs: 2000, force: true }).catch(() => undefined);
    await m.cleanup(s.name).catch(() => undefined);
  }
}

/** Events recorded so far (optionally of some kinds): WatchEvents' backlog, read for `ms`. */
export function recordedEvents(c: ControlServiceClient, kinds: string[] = [], ms = 500): Promise<Event[]> {
  return new Promise((res, rej) => {
    const out: Event[] = [];
    const s = c.watchEvents({ sinceRevision: 0, kinds });
    s.on("data", (e: Event) => out.push(e));
    s.on("error", (e: { code?: number }) => {
      if (e.code !== 1) rej(ProtoctlError.from(e)); // 1 = CANCELLED: ours
    });
    setTimeout(() => {
      s.cancel();
      res(out);
    }, ms);
  });
}

export async function readyNodes(c: ControlServiceClient): Promise<number> {
  return (await call(c, "listNodes", {})).nodes.filter((x) => x.state === NodeState.NODE_STATE_READY).length;
}

/** ApplyLab, collecting the progress stream; rejects with the call's error. */
export function applyLab(
  c: ControlServiceClient,
  specYaml: string,
  opts: Partial<ApplyLabRequest> = {},
): Promise<LabProgress[]> {
  return streamed(
    c.applyLab(
      { specYaml, wait: true, dryRun: false, ...opts },
      { deadline: new Date(Date.now() + 300_000) },
    ),
  );
}

/** Interfaces in a host's namespace, by name. */
export async function hostLinks(hosts: TestHosts, h: TestHost): Promise<string[]> {
  const r = await hosts.exec(h, "ip", ["-o", "link", "show"]);
  return r.stdout
    .split("\n")
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((x): x is string => !!x);
}
