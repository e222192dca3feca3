/**
 * The cluster the fault cases run on: network-namespace hosts
 * (test/fixtures/hosts.ts). h0 holds a three-member etcd (ports 2379/2380,
 * 2381/2382, 2383/2384) and three controller replicas (TLS on, CA in etcd,
 * each given all three etcd endpoints); h1..hN each run a real agent
 * (`protoctl agent` process, btrfs pool on tmpfs, systemd-nspawn) that knows
 * all three controllers. busybox is imported on every node.
 *
 * Every daemon can be SIGKILLed and started again on its own state (same
 * data dir, same ports), and a node can be cut from the controllers with
 * firewall rules inside its own namespace. The test process talks to each
 * controller over its unix socket.
 *
 * Processes enter a host with `nsenter --net` only, so the agents' mounts
 * stay visible here and `stop()` can remove them (as test/e2e/lab-cluster.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../common/exec.js";
import { clientCredentials, readCredentialFile } from "../../common/tls.js";
import type { ControlServiceClient } from "../../proto/gen/protoctl/v1/control.js";
import { NodeState } from "../../proto/gen/protoctl/v1/types.js";
import { stopLeftMachines } from "../e2e/lab-cluster.js";
import { createHosts, type TestHost, type TestHosts } from "../fixtures/hosts.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";
import { call, client, eventually, importBaseFromDir, REUSABLE } from "../support/controller/cluster.js";
import { sourceAgentCommand, sourceControllerCommand, waitLine } from "../support/controller/process.js";
import { cleanAgentDir, loopsUnder } from "../support/controller/propagation-cluster.js";

export const ETCD_MEMBERS = 3;
export const CONTROLLERS = 3;

export interface FaultClusterOptions {
  /** Agent hosts (h1..hN); default 3. */
  agents?: number;
  poolSize?: string;
  lostGraceSeconds?: number;
  /** Agents (by index) whose state directory is a tmpfs of this many MiB: a node with a small disk. */
  stateDirMiB?: Record<number, number>;
}

export interface FaultCluster {
  hosts: TestHosts;
  /** Agent node names, by index (agent i runs on host i+1). */
  nodes: string[];
  agentDirs: Map<string, string>;
  /** A client of a running controller (the first one up). */
  c(): ControlServiceClient;
  /** Client of controller i (ctl-0 …); throws when it is not running. */
  controller(i: number): ControlServiceClient;
  controllerIds: string[];
  /** Index of the controller that leads now (asked of a running one). */
  leader(): Promise<number>;
  killController(i: number): Promise<void>;
  /** Starts controller i again; `over` changes its reconcile settings (e.g. the lost grace). */
  startController(i: number, reconcile?: Record<string, number>): Promise<void>;
  killEtcd(i: number): Promise<void>;
  startEtcd(i: number): Promise<void>;
  killAgent(node: string): Promise<void>;
  startAgent(node: string): void;
  /** Drops all traffic between the node's host and h0 (controllers, etcd) inside the node's namespace. */
  partition(node: string): Promise<void>;
  heal(node: string): Promise<void>;
  nodeState(node: string): Promise<NodeState>;
  /** Brings back whatever a failed case left down: etcd members, controllers, agents, partitions. */
  restore(): Promise<void>;
  stop(): Promise<void>;
}

const BASE_CTL_PORT = 7443;

export async function startFaultCluster(opts: FaultClusterOptions = {}): Promise<FaultCluster> {
  const n = opts.agents ?? 3;
  const hosts = await createHosts(n + 1);
  const dir = await mkdtemp(join(tmpdir(), "protoctl-faults-"));
  const rootfs = await mkdtemp(join(tmpdir(), "protoctl-rootfs-"));
  const h0 = hosts.hosts[0]!;
  const children = new Set<ChildProcess>();
  const etcds = new Map<number, ChildProcess>();
  const ctls = new Map<number, { proc: ChildProcess; client: ControlServiceClient }>();
  const agents = new Map<string, ChildProcess>();
  const agentDirs = new Map<string, string>();
  const partitioned = new Set<string>();
  const nodes = hosts.hosts.slice(1).map((_, i) => `f${i}-${hosts.suffix}`);
  const controllerIds = Array.from({ length: CONTROLLERS }, (_, i) => `ctl-${i}-${hosts.suffix}`);
  let token = "";
  let creds: ReturnType<typeof clientCredentials> | undefined;

  const inHost = (h: TestHost, args: string[]): ChildProcess => {
    const p = spawn("nsenter", [`--net=/run/netns/${h.netns}`, "--", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    p.stderr?.on("data", (b: Buffer) => {
      err = (err + b.toString()).slice(-4000);
      if (process.env.PROTOCTL_TEST_LOG) process.stderr.write(b);
    });
    p.stdout?.resume();
    (p as ChildProcess & { lastStderr: () => string }).lastStderr = () => err;
    children.add(p);
    p.once("exit", () => children.delete(p));
    return p;
  };
  const kill = (p: ChildProcess | undefined, sig: NodeJS.Signals): Promise<void> => {
    if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
    return new Promise((r) => {
      p.once("exit", () => r());
      p.kill(sig);
    });
  };

  const etcdUrl = (i: number) => `http://${h0.address}:${2379 + 2 * i}`;
  const peerUrl = (i: number) => `http://${h0.address}:${2380 + 2 * i}`;
  const cluster = Array.from({ length: ETCD_MEMBERS }, (_, i) => `m${i}=${peerUrl(i)}`).join(",");
  const startEtcd = async (i: number): Promise<void> => {
    const p = inHost(h0, [
      "etcd",
      ...["--name", `m${i}`, "--data-dir", join(dir, `etcd-${i}`), "--log-level", "error"],
      ...["--listen-client-urls", etcdUrl(i), "--advertise-client-urls", etcdUrl(i)],
      ...["--listen-peer-urls", peerUrl(i), "--initial-advertise-peer-urls", peerUrl(i)],
      ...["--initial-cluster", cluster, "--initial-cluster-token", `faults-${hosts.suffix}`],
      // short election timings: a lost member is noticed and a new etcd leader chosen quickly
      ...["--heartbeat-interval", "100", "--election-timeout", "1000"],
    ]);
    etcds.set(i, p);
  };
  const etcdHealthy = async (i: number) =>
    (
      await hosts.exec(h0, "etcdctl", ["--endpoints", etcdUrl(i), "endpoint", "health"], {
        allowFailure: true,
        env: { ETCDCTL_API: "3" },
        timeoutMs: 5000,
      })
    ).exitCode === 0;

  const ctlConfig = (i: number, reconcile: Record<string, number> = {}) => ({
    id: controllerIds[i],
    listen: `${h0.address}:${BASE_CTL_PORT + 2 * i}`,
    extraListen: [`unix://${join(dir, `ctl-${i}.sock`)}`],
    stateDir: join(dir, `ctl-${i}`),
    // the fixture etcd is plaintext: keeping the CA key there is accepted explicitly
    etcd: {
      endpoints: Array.from({ length: ETCD_MEMBERS }, (_, k) => etcdUrl(k)),
      prefix: "/protoctl/v1/",
      insecure: true,
    },
    tls: { caStore: "etcd" },
    membership: { leaseTtlSeconds: 3, heartbeatIntervalMs: 1000 },
    reconcile: {
      electionTtlSeconds: 2,
      // long: an agent restarted on a loaded machine re-adopts its machines before it is Ready
      lostGraceSeconds: opts.lostGraceSeconds ?? 120,
      backoffBaseMs: 100,
      backoffMaxMs: 2000,
      ...reconcile,
    },
  });
  const startController = async (i: number, reconcile?: Record<string, number>): Promise<void> => {
    const p = inHost(h0, sourceControllerCommand(ctlConfig(i, reconcile)));
    await waitLine(p, /READY/, 90_000);
    if (!creds) {
      const cred = await readCredentialFile(join(dir, `ctl-${i}`, "admin.json"));
      creds = clientCredentials(cred, { serverName: "protoctl-controller" });
    }
    ctls.set(i, { proc: p, client: client(`unix://${join(dir, `ctl-${i}.sock`)}`, creds) });
  };
  const killController = async (i: number): Promise<void> => {
    const x = ctls.get(i);
    ctls.delete(i);
    x?.client.close();
    await kill(x?.proc, "SIGKILL");
  };
  const controllerAddrs = () =>
    Array.from({ length: CONTROLLERS }, (_, i) => `${h0.address}:${BASE_CTL_PORT + 2 * i}`).join(",");
  const smallDirs: string[] = [];
  const startAgent = (node: string): void => {
    const i = nodes.indexOf(node);
    if (i < 0) throw new Error(`no node ${node}`);
    const h = hosts.hosts[i + 1]!;
    const stateDir = join(dir, `agent-${node}`);
    agentDirs.set(node, stateDir);
    const p = inHost(
      h,
      sourceAgentCommand({
        name: node,
        listen: `${h.address}:7444`,
        controller: controllerAddrs(),
        token,
        stateDir,
        poolSize: opts.poolSize,
      }),
    );
    agents.set(node, p);
  };
  const c = (): ControlServiceClient => {
    const first = [...ctls.keys()].sort()[0];
    if (first === undefined) throw new Error("no controller is running");
    return ctls.get(first)!.client;
  };
  const firewall = async (node: string, op: "-I" | "-D") => {
    const h = hosts.hosts[nodes.indexOf(node) + 1]!;
    await hosts.exec(h, "iptables", [op, "INPUT", "-s", h0.address, "-j", "DROP"]);
    await hosts.exec(h, "iptables", [op, "OUTPUT", "-d", h0.address, "-j", "DROP"]);
  };

  const stop = async () => {
    for (const x of ctls.values()) x.client.close();
    for (const node of partitioned) await firewall(node, "-D").catch(() => undefined);
    const loops = await loopsUnder([...agentDirs.values()].map((d) => `${d}/`));
    for (const p of agents.values()) await kill(p, "SIGTERM");
    for (const p of [...children].reverse()) await kill(p, "SIGTERM");
    for (const [node, d] of agentDirs) {
      if (!existsSync(d)) continue;
      await stopLeftMachines(node, d);
      await cleanAgentDir(d, loops);
    }
    for (const d of smallDirs) await run("umount", [d], { allowFailure: true });
    await hosts.cleanup();
    await rm(dir, { recursive: true, force: true });
    await rm(rootfs, { recursive: true, force: true });
  };

  try {
    await makeBusyboxRootfs(rootfs);
    for (let i = 0; i < ETCD_MEMBERS; i++) await startEtcd(i);
    await eventually(async () => (await Promise.all([0, 1, 2].map(etcdHealthy))).every(Boolean), 30_000, 100);
    // the first controller makes the CA; the others find it in etcd
    await startController(0);
    await Promise.all([1, 2].map((i) => startController(i)));
    token = (await call(c(), "createJoinToken", { ttlSeconds: 3600, labels: {}, ...REUSABLE })).token;
    for (const [i, mib] of Object.entries(opts.stateDirMiB ?? {})) {
      const stateDir = join(dir, `agent-${nodes[Number(i)]}`);
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      await run("mount", ["-t", "tmpfs", "-o", `size=${mib}m,mode=0700`, "tmpfs", stateDir]);
      smallDirs.push(stateDir);
    }
    for (const node of nodes) startAgent(node);
    await eventually(async () => (await readyNodes(c())) === n, 90_000, 200);
    await Promise.all(nodes.map((node) => importBaseFromDir(c(), node, "busybox", rootfs)));
    await eventually(
      async () => (await call(c(), "getBase", { name: "busybox" })).versions[0]?.nodes.length === n,
      30_000,
      100,
    );
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    hosts,
    nodes,
    agentDirs,
    c,
    controller: (i) => {
      const x = ctls.get(i);
      if (!x) throw new Error(`controller ${i} is not running`);
      return x.client;
    },
    controllerIds,
    leader: async () => {
      const v = await call(c(), "getVersion", {}, 5000);
      return controllerIds.indexOf(v.leader);
    },
    killController,
    startController,
    killEtcd: async (i) => {
      await kill(etcds.get(i), "SIGKILL");
      etcds.delete(i);
    },
    startEtcd: async (i) => {
      await startEtcd(i);
      await eventually(() => etcdHealthy(i), 30_000, 100);
    },
    killAgent: async (node) => {
      await kill(agents.get(node), "SIGKILL");
      agents.delete(node);
    },
    startAgent,
    partition: async (node) => {
      partitioned.add(node);
      await firewall(node, "-I");
    },
    heal: async (node) => {
      await firewall(node, "-D");
      partitioned.delete(node);
    },
    nodeState: async (node) => (await call(c(), "getNode", { name: node }, 5000)).state,
    restore: async () => {
      for (const node of [...partitioned]) {
        await firewall(node, "-D").catch(() => undefined);
        partitioned.delete(node);
      }
      for (let i = 0; i < ETCD_MEMBERS; i++) if (!etcds.has(i)) await startEtcd(i);
      for (let i = 0; i < CONTROLLERS; i++) if (!ctls.has(i)) await startController(i);
      for (const node of nodes) if (!agents.has(node)) startAgent(node);
      await eventually(async () => (await readyNodes(c())) === n, 120_000, 200);
    },
    stop,
  };
}

export async function readyNodes(c: ControlServiceClient): Promise<number> {
  return (await call(c, "listNodes", {}, 5000)).nodes.filter((x) => x.state === NodeState.NODE_STATE_READY)
    .length;
}
