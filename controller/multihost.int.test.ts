/**
 * The real thing on the multi-host fixture: three network namespaces on one
 * L2 segment. h0 runs etcd and two controller replicas (TLS on); h1 and h2
 * run real agents (`protoctl agent` processes: btrfs pool on tmpfs,
 * systemd-nspawn) that join with a token and talk mutual TLS. The test
 * process reaches the controllers through their unix sockets.
 *
 * Checked: both nodes join and report a base; envs spread over the two
 * nodes and run; exec is proxied to the env's agent; killing an agent
 * (SIGKILL) turns its node NotReady within the lease window.
 *
 * Processes enter a host's network namespace with `nsenter --net` (not
 * `ip netns exec`, which also unshares the mount namespace): the agents'
 * pool mounts then stay visible here, and the test can destroy them.
 */
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { openPool } from "../agent/host/pool/pool.js";
import { silentLogger } from "../common/logger.js";
import { clientCredentials, readCredentialFile } from "../common/tls.js";
import { EnvPhase, type EnvSpec, NodeState } from "../proto/gen/protoctl/v1/types.js";
import { createHosts, type TestHosts } from "../test/fixtures/hosts.js";
import { makeBusyboxRootfs } from "../test/fixtures/rootfs.js";
import {
  call,
  client,
  eventually,
  execIn,
  importBaseFromDir,
  REUSABLE,
  testEnvSpec,
} from "../test/support/controller/cluster.js";
import { startHostEtcd } from "../test/support/controller/host-etcd.js";
import { sourceAgentCommand, sourceControllerCommand, waitLine } from "../test/support/controller/process.js";

let hosts: TestHosts;
let dir: string;
let rootfs: string;
const children: ChildProcess[] = [];
const agentDirs: string[] = [];

function inHost(netns: string, args: string[], onStdout?: (s: string) => void): ChildProcess {
  const c = spawn("nsenter", [`--net=/run/netns/${netns}`, "--", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  c.stdout?.on("data", (b: Buffer) => onStdout?.(b.toString()));
  c.stderr?.on("data", (b: Buffer) => {
    err = (err + b.toString()).slice(-4000);
    if (process.env.PROTOCTL_TEST_LOG) process.stderr.write(b);
  });
  (c as ChildProcess & { lastStderr: () => string }).lastStderr = () => err;
  children.push(c);
  return c;
}

function kill(c: ChildProcess, sig: NodeJS.Signals): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    c.once("exit", () => r());
    c.kill(sig);
  });
}

beforeAll(async () => {
  hosts = await createHosts(3);
  dir = await mkdtemp(join(tmpdir(), "protoctl-mh-"));
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-rootfs-"));
  await makeBusyboxRootfs(rootfs);
});

afterAll(async () => {
  for (const c of children.reverse()) await kill(c, "SIGTERM");
  for (const d of agentDirs) {
    if (!existsSync(d)) continue;
    const pool = await openPool(
      { kind: "tmpfs", stateDir: d, sizeBytes: 512 * 2 ** 20 },
      silentLogger(),
    ).catch(() => undefined);
    await (pool as unknown as { destroy?(): Promise<void> } | undefined)?.destroy?.();
  }
  await hosts?.cleanup();
  await rm(dir, { recursive: true, force: true });
  await rm(rootfs, { recursive: true, force: true });
});

function spec(name: string): EnvSpec {
  return testEnvSpec(name, { base: { name: "busybox", version: 0 } });
}

it("two controllers and two real agents in separate network namespaces", async () => {
  const [h0, h1, h2] = hosts.hosts as [
    (typeof hosts.hosts)[0],
    (typeof hosts.hosts)[0],
    (typeof hosts.hosts)[0],
  ];
  const { url: etcdUrl } = await startHostEtcd(hosts, h0, "mh", join(dir, "etcd"), (args) =>
    inHost(h0.netns, args),
  );

  const controllers = ["a", "b"].map((id, i) => {
    const cfg = {
      id: `ctl-${id}`,
      listen: `${h0.address}:${7443 + 2 * i}`,
      extraListen: [`unix://${join(dir, `ctl-${id}.sock`)}`],
      stateDir: join(dir, `ctl-${id}`),
      // the fixture etcd is plaintext: keeping the CA key there is accepted explicitly
      etcd: { endpoints: [etcdUrl], prefix: "/protoctl/v1/", insecure: true },
      tls: { caStore: "etcd" },
      membership: { leaseTtlSeconds: 3, heartbeatIntervalMs: 1000 },
      reconcile: { electionTtlSeconds: 3, lostGraceSeconds: 60 },
    };
    return inHost(h0.netns, sourceControllerCommand(cfg));
  });
  // both listeners at once: output that arrives before a listener is attached is gone
  await Promise.all(controllers.map((x) => waitLine(x, /READY/, 90_000)));
  const cred = await readCredentialFile(join(dir, "ctl-a", "admin.json"));
  const creds = clientCredentials(cred, { serverName: "protoctl-controller" });
  const c = client(`unix://${join(dir, "ctl-b.sock")}`, creds);
  try {
    const { token } = await call(c, "createJoinToken", { ttlSeconds: 600, labels: {}, ...REUSABLE });
    const ctlAddrs = `${h0.address}:7443,${h0.address}:7445`;
    const startAgent = (name: string, h: typeof h1) => {
      const stateDir = join(dir, `agent-${name}`);
      if (!agentDirs.includes(stateDir)) agentDirs.push(stateDir);
      return inHost(
        h.netns,
        sourceAgentCommand({ name, listen: `${h.address}:7444`, controller: ctlAddrs, token, stateDir }),
      );
    };
    const a1 = startAgent("a1", h1);
    let a2 = startAgent("a2", h2);
    const ready = async (n: number) =>
      (await call(c, "listNodes", {})).nodes.filter((x) => x.state === NodeState.NODE_STATE_READY).length ===
      n;
    await eventually(() => ready(2), 60_000, 200);

    for (const node of ["a1", "a2"]) await importBaseFromDir(c, node, "busybox", rootfs);
    await eventually(
      async () => {
        const b = await call(c, "getBase", { name: "busybox" });
        return b.versions[0]?.nodes.length === 2;
      },
      20_000,
      200,
    );

    const envs = await Promise.all(
      ["e1", "e2", "e3", "e4"].map((n) => call(c, "createEnv", { spec: spec(n), wait: true }, 120_000)),
    );
    expect(envs.every((e) => e.status?.phase === EnvPhase.ENV_PHASE_RUNNING)).toBe(true);
    expect(envs.map((e) => e.status?.node).sort()).toEqual(["a1", "a1", "a2", "a2"]);

    const hello = await execIn(c, "e1", ["sh", "-c", "echo hello from $(cat /etc/hostname)"]);
    expect(hello.stdout).toBe("hello from e1\n");

    // SIGKILL the agent on h2: its node turns NotReady within the lease window
    const t0 = Date.now();
    await kill(a2, "SIGKILL");
    await eventually(
      async () => (await call(c, "getNode", { name: "a2" })).state === NodeState.NODE_STATE_NOT_READY,
      10_000,
      50,
    );
    const detect = Date.now() - t0;
    console.log(`real agent a2 SIGKILLed: node NotReady after ${detect} ms`);

    // bring it back (it re-adopts its machines), then delete everything through the API
    a2 = startAgent("a2", h2);
    await eventually(() => ready(2), 60_000, 200);
    for (const e of envs) await call(c, "deleteEnv", { name: e.spec!.name, wait: true }, 60_000);
    expect((await call(c, "listEnvs", { node: "", group: "" })).envs).toEqual([]);
    await kill(a1, "SIGTERM");
    await kill(a2, "SIGTERM");
  } finally {
    c.close();
  }
});
