/**
 * A real cluster for propagation tests and bench/propagate (not used in
 * production): network-namespace hosts (test/fixtures/hosts.ts), etcd and one
 * controller (TLS on) on h0, `protoctl agent` processes on h1..hN with tmpfs
 * pools. The test process reaches the controller through a unix socket.
 *
 * Agents enter their host with `nsenter --net` only, so their mounts (pool,
 * sprouts, FUSE) stay visible here and `cleanup()` can remove every one.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPool } from "../../../agent/host/pool/pool.js";
import { ProtoctlError } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import { silentLogger } from "../../../common/logger.js";
import { loopsUnder as loopsUnderPath, processesNaming, terminate } from "../../../common/state-cleanup.js";
import { clientCredentials, readCredentialFile } from "../../../common/tls.js";
import type {
  ControlServiceClient,
  PushBaseRequest,
  PushProgress,
} from "../../../proto/gen/protoctl/v1/control.js";
import { NodeState, type OperationEvent } from "../../../proto/gen/protoctl/v1/types.js";
import { createHosts, type TestHost, type TestHosts } from "../../fixtures/hosts.js";
import { call, client, eventually, execIn, importBaseFromDir, REUSABLE, testEnvSpec } from "./cluster.js";
import { startHostEtcd } from "./host-etcd.js";
import { sourceAgentCommand, sourceControllerCommand, waitLine } from "./process.js";

export interface TestAgent {
  name: string;
  host: TestHost;
  stateDir: string;
  proc: ChildProcess;
}

export interface PropagationCluster {
  hosts: TestHosts;
  c: ControlServiceClient;
  agents: TestAgent[];
  dir: string;
  startAgent(a: Pick<TestAgent, "name" | "host" | "stateDir">): TestAgent;
  /** SIGKILLs the controller (no cleanup: its lease lapses) and starts a new one on the same state. */
  restartController(): Promise<void>;
  /** Replicas by id (ctl-a first), with a client each over its own unix socket. */
  controllers: Array<{ id: string; proc: ChildProcess; c: ControlServiceClient }>;
  /** SIGKILLs replica `id` and starts it again (same config), without waiting for it. */
  killController(id: string): Promise<void>;
  kill(p: ChildProcess, sig: NodeJS.Signals): Promise<void>;
  /** etcd values under `/protoctl/v1/<folder>` as parsed JSON. */
  etcd(folder: string): Promise<Array<Record<string, unknown>>>;
  /** Writes `/protoctl/v1/<key>` (a test playing a node or source that lies). */
  etcdPut(key: string, value: unknown): Promise<void>;
  importBase(node: string, name: string, dir: string): Promise<OperationEvent[]>;
  push(req: Partial<PushBaseRequest>, on?: (p: PushProgress, t: number) => void): Promise<PushProgress[]>;
  createEnv(name: string, base: string, version: number, node: string): Promise<void>;
  exec(env: string, command: string[]): Promise<{ stdout: string; exit: number }>;
  cleanup(): Promise<void>;
}

/**
 * Starts etcd + a controller on h0 and `agents` agents; `smallStateDir`
 * names agents whose state directory is a tmpfs of that many MiB;
 * `schedulerPropagation` lets the scheduler place envs on nodes lacking the
 * version (the controller pushes it there first).
 */
export async function startPropagationCluster(opts: {
  agents: number;
  poolSize?: string;
  smallStateDir?: Record<string, number>;
  schedulerPropagation?: boolean;
  /** Node labels per agent name, "k=v,k2=v2". */
  labels?: Record<string, string>;
  /** Controller replicas (default 1); agents are given every replica's address. */
  controllers?: number;
  /** How long to wait for every agent to be Ready (default 90 s). */
  readyTimeoutMs?: number;
}): Promise<PropagationCluster> {
  const hosts = await createHosts(opts.agents + 1, { prefix: "pp" });
  const dir = await mkdtemp(join(tmpdir(), "protoctl-prop-"));
  const children: ChildProcess[] = [];
  const agents: TestAgent[] = [];
  const tmpfsDirs: string[] = [];
  const inHost = (h: TestHost, args: string[]) => {
    const c = spawn("nsenter", [`--net=/run/netns/${h.netns}`, "--", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    c.stderr?.on("data", (b: Buffer) => {
      if (process.env.PROTOCTL_TEST_LOG) process.stderr.write(b);
    });
    c.stdout?.on("data", () => undefined);
    children.push(c);
    return c;
  };
  // Bounded: a process stuck in the kernel (D state) ignores even SIGKILL, and a cleanup that
  // waited for it forever would leave the rest of the cluster behind when the run is timed out.
  const kill = (c: ChildProcess, sig: NodeJS.Signals) => {
    if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise<void>((r) => {
      const hard = setTimeout(() => c.kill("SIGKILL"), 10_000);
      const giveUp = setTimeout(() => {
        process.stderr.write(`test cluster: pid ${c.pid} did not exit; cleaning up around it\n`);
        r();
      }, 15_000);
      c.once("exit", () => {
        clearTimeout(hard);
        clearTimeout(giveUp);
        r();
      });
      c.kill(sig);
    });
  };
  const h0 = hosts.hosts[0]!;
  let c: ControlServiceClient | undefined;
  const extraClients: ControlServiceClient[] = [];
  const cleanup = async () => {
    c?.close();
    for (const x of extraClients) x.close();
    // Loop devices over FUSE files lose their path when a dying nbdfuse unmounts lazily: note them first.
    const loops = await loopsUnder(agents.map((a) => `${a.stateDir}/`));
    for (const ch of [...children].reverse()) await kill(ch, "SIGTERM");
    await hosts.cleanup();
    for (const a of agents) await cleanAgentDir(a.stateDir, loops);
    for (const d of tmpfsDirs) await run("umount", ["-l", d], { allowFailure: true });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const { url: etcdUrl } = await startHostEtcd(hosts, h0, "pp", join(dir, "etcd"), (args) =>
      inHost(h0, args),
    );
    const cfg = {
      id: "ctl-a",
      listen: `${h0.address}:7443`,
      extraListen: [`unix://${join(dir, "ctl.sock")}`],
      stateDir: join(dir, "ctl"),
      // the fixture etcd is plaintext: keeping the CA key there is accepted explicitly
      etcd: { endpoints: [etcdUrl], prefix: "/protoctl/v1/", insecure: true },
      tls: { caStore: "etcd" },
      membership: { leaseTtlSeconds: 3, heartbeatIntervalMs: 500 },
      reconcile: { electionTtlSeconds: 3, lostGraceSeconds: 120 },
      scheduler: { propagation: opts.schedulerPropagation ?? false },
    };
    let ctl = inHost(h0, sourceControllerCommand(cfg));
    await waitLine(ctl, /READY/, 90_000);
    const cred = await readCredentialFile(join(dir, "ctl", "admin.json"));
    const creds = clientCredentials(cred, { serverName: "protoctl-controller" });
    c = client(`unix://${join(dir, "ctl.sock")}`, creds);
    const cc = c;
    // more replicas: same etcd and CA, a port and a socket each
    const replicaCfg = (i: number) => {
      const id = `ctl-${String.fromCharCode(97 + i)}`;
      return i === 0
        ? cfg
        : {
            ...cfg,
            id,
            listen: `${h0.address}:${7443 + 2 * i}`,
            extraListen: [`unix://${join(dir, `${id}.sock`)}`],
            stateDir: join(dir, id),
          };
    };
    const controllers = [{ id: "ctl-a", proc: ctl, c: cc }];
    for (let i = 1; i < (opts.controllers ?? 1); i++) {
      const rc = replicaCfg(i);
      const proc = inHost(h0, sourceControllerCommand(rc));
      await waitLine(proc, /READY/, 90_000);
      const rcClient = client(rc.extraListen[0]!, creds);
      extraClients.push(rcClient);
      controllers.push({ id: rc.id, proc, c: rcClient });
    }
    const controllerList = controllers.map((_, i) => replicaCfg(i).listen).join(",");
    const { token } = await call(cc, "createJoinToken", { ttlSeconds: 3600, labels: {}, ...REUSABLE });
    const startAgent = (a: Pick<TestAgent, "name" | "host" | "stateDir">): TestAgent => {
      const proc = inHost(
        a.host,
        sourceAgentCommand({
          name: a.name,
          listen: `${a.host.address}:7444`,
          controller: controllerList,
          token,
          stateDir: a.stateDir,
          poolSize: opts.poolSize,
          logLevel: process.env.PROTOCTL_TEST_LOG,
          labels: opts.labels?.[a.name],
        }),
      );
      const agent = { ...a, proc };
      const i = agents.findIndex((x) => x.name === a.name);
      if (i >= 0) agents[i] = agent;
      else agents.push(agent);
      return agent;
    };
    for (let i = 1; i <= opts.agents; i++) {
      const name = `a${i}`;
      const stateDir = join(dir, `agent-${name}`);
      const small = opts.smallStateDir?.[name];
      if (small) {
        await run("mkdir", ["-p", stateDir]);
        await run("mount", ["-t", "tmpfs", "-o", `size=${small}m`, "tmpfs", stateDir]);
        tmpfsDirs.push(stateDir);
      }
      startAgent({ name, host: hosts.hosts[i]!, stateDir });
    }
    await eventually(
      async () =>
        (await call(cc, "listNodes", {})).nodes.filter((x) => x.state === NodeState.NODE_STATE_READY)
          .length === opts.agents,
      // agents start from the sources: on a loaded 2-core machine that alone can take a minute
      opts.readyTimeoutMs ?? 90_000,
      200,
    );
    return {
      hosts,
      c: cc,
      agents,
      dir,
      startAgent,
      restartController: async () => {
        await kill(ctl, "SIGKILL");
        ctl = inHost(h0, sourceControllerCommand(cfg));
        controllers[0]!.proc = ctl;
        await waitLine(ctl, /READY/, 90_000);
      },
      controllers,
      killController: async (id) => {
        const i = controllers.findIndex((x) => x.id === id);
        const r = controllers[i]!;
        await kill(r.proc, "SIGKILL");
        r.proc = inHost(h0, sourceControllerCommand(replicaCfg(i)));
        if (i === 0) ctl = r.proc;
      },
      kill,
      cleanup,
      etcd: async (folder) => {
        const out = await output("nsenter", [
          `--net=/run/netns/${h0.netns}`,
          "--",
          "etcdctl",
          "--endpoints",
          etcdUrl,
          "get",
          `/protoctl/v1/${folder}`,
          "--prefix",
          "--print-value-only",
        ]);
        return out
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      },
      etcdPut: async (key, value) => {
        await run("nsenter", [
          `--net=/run/netns/${h0.netns}`,
          "--",
          "etcdctl",
          "--endpoints",
          etcdUrl,
          "put",
          `/protoctl/v1/${key}`,
          JSON.stringify(value),
        ]);
      },
      importBase: (node, name, rootDir) => importBaseFromDir(cc, node, name, rootDir),
      push: (req, on) =>
        new Promise((res, rej) => {
          const t0 = performance.now();
          const all: PushProgress[] = [];
          const s = cc.pushBase({
            ref: undefined,
            nodes: [],
            all: false,
            selector: {},
            fanout: 0,
            transport: "",
            waitLocal: false,
            ...req,
          });
          s.on("data", (p: PushProgress) => {
            all.push(p);
            on?.(p, performance.now() - t0);
          });
          s.on("end", () => res(all));
          s.on("error", (e) => rej(Object.assign(ProtoctlError.from(e), { progress: all })));
        }),
      createEnv: async (name, base, version, node) => {
        await call(
          cc,
          "createEnv",
          { spec: testEnvSpec(name, { base: { name: base, version }, node }), wait: true },
          120_000,
        );
      },
      exec: async (env, command) => {
        const r = await execIn(cc, env, command);
        return { stdout: r.stdout, exit: r.code };
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Loop devices whose backing file is below one of `prefixes` (pools excluded). */
export async function loopsUnder(prefixes: string[]): Promise<string[]> {
  const json = await output("losetup", ["-J"]);
  const pools = new Set(prefixes.flatMap((p) => loopsUnderPath(`${p}pool`, json)));
  return prefixes.flatMap((p) => loopsUnderPath(p.replace(/\/$/, ""), json)).filter((n) => !pools.has(n));
}

/** Unmounts every mount strictly below `dir`, deepest first (env overlays, a dead agent's leftovers). */
async function unmountBelow(dir: string): Promise<void> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const points = info
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((p): p is string => !!p && p.startsWith(`${dir}/`))
    .map((p) => p.replace(/\\040/g, " "))
    .sort((a, b) => b.length - a.length);
  for (const p of points) {
    const r = await run("umount", [p], { allowFailure: true });
    if (r.exitCode !== 0) await run("umount", ["-l", p], { allowFailure: true });
  }
}

/**
 * Removes everything an agent left under its state dir: mounts (deepest
 * first: env overlays, sprouts, FUSE, then what is below the pool's mount,
 * and the pool), loop devices bound to its files, the NBD clients' TLS
 * proxies, then the pool storage.
 */
export async function cleanAgentDir(stateDir: string, knownLoops: string[] = []): Promise<void> {
  if (!existsSync(stateDir)) return;
  const prefix = `${stateDir}/`;
  const mine = async () =>
    (await readFile("/proc/self/mountinfo", "utf8"))
      .split("\n")
      .map((l) => {
        const f = l.split(" ");
        return { target: f[4] ?? "", fstype: f[f.indexOf("-") + 1] ?? "" };
      })
      .filter((m) => m.target.startsWith(prefix) && !m.target.startsWith(`${prefix}pool/`))
      .sort((a, b) => b.target.length - a.target.length);
  // Env overlays and sprouts first, then the loop devices under them, FUSE files last
  // (a loop device over a lazily unmounted FUSE file would lose its path).
  for (const m of await mine()) {
    if (m.fstype.startsWith("fuse")) continue;
    // a sprout left frozen (an agent killed mid loop switch) would outlive its unmount
    if (m.fstype === "btrfs") await run("fsfreeze", ["--unfreeze", m.target], { allowFailure: true });
    const r = await run("umount", [m.target], { allowFailure: true });
    if (r.exitCode !== 0) await run("umount", ["-l", m.target], { allowFailure: true });
  }
  for (const name of new Set([...knownLoops, ...(await loopsUnder([prefix]))])) {
    await run("btrfs", ["device", "scan", "--forget", name], { allowFailure: true });
    await run("losetup", ["--detach", name], { allowFailure: true });
  }
  for (const m of await mine()) {
    const r = await run("fusermount3", ["-u", m.target], { allowFailure: true });
    if (r.exitCode !== 0) await run("umount", ["-l", m.target], { allowFailure: true });
  }
  // NBD clients' TLS proxies outlive their agent (nbd-transport.ts)
  await terminate(processesNaming(stateDir), 2000);
  const pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 512 * 2 ** 20 }, silentLogger()).catch(
    () => undefined,
  );
  if (pool) await unmountBelow(pool.mountpoint);
  await pool?.destroy();
  await rm(join(stateDir, "propagation"), { recursive: true, force: true }).catch(() => undefined);
}
