/**
 * Controller end to end with real etcd, two in-process controllers and fake
 * agents over real gRPC: placement spread, capacity, NotReady detection,
 * Lost + restart elsewhere, stop/start/delete, exec/logs proxying, events.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../common/errors.js";
import type { ControlServiceClient } from "../proto/gen/protoctl/v1/control.js";
import { EnvPhase, ExecStart, NodeState, RestartPolicy } from "../proto/gen/protoctl/v1/types.js";
import { startEtcd, type TestEtcd } from "../test/fixtures/etcd.js";
import { type FakeAgent, sealFakeBases, startFakeAgent } from "../test/harness/fake-agent.js";
import {
  call,
  client,
  eventually,
  joinAgents,
  REUSABLE,
  startTestController,
  streamed,
  testEnvSpec,
  uniquePrefix,
} from "../test/support/controller/cluster.js";
import type { RunningController } from "./controller.js";
import { ClusterStore } from "./store/store.js";

const GiB = 2 ** 30;

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

describe("controller with fake agents", () => {
  let prefix: string;
  let controllers: RunningController[] = [];
  let agents: FakeAgent[] = [];
  let c: ControlServiceClient;

  const setup = async (agentSpecs: Parameters<typeof joinAgents>[2]) => {
    prefix = uniquePrefix();
    controllers = [
      await startTestController(etcd.endpoint, prefix),
      await startTestController(etcd.endpoint, prefix),
    ];
    c = client(controllers[1]!.address);
    const { token } = await call(c, "createJoinToken", { ttlSeconds: 60, labels: {}, ...REUSABLE });
    await sealFakeBases({ endpoint: etcd.endpoint, prefix }, agentSpecs);
    agents = await joinAgents(
      controllers.map((x) => x.address),
      token,
      agentSpecs,
    );
    await eventually(
      async () =>
        (await call(c, "listNodes", {})).nodes.filter((n) => n.state === NodeState.NODE_STATE_READY)
          .length === agentSpecs.length,
    );
  };

  afterEach(async () => {
    c?.close();
    for (const a of agents) await a.stop();
    for (const x of controllers) await x.stop();
    const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix });
    await store.purge();
    expect(await store.kv.count(prefix)).toBe(0);
    await store.close();
    agents = [];
    controllers = [];
  });

  it("spreads envs over nodes and reports them Running through any replica", async () => {
    await setup([{ name: "n1" }, { name: "n2" }, { name: "n3" }]);
    const envs = await Promise.all(
      Array.from({ length: 9 }, (_, i) => call(c, "createEnv", { spec: testEnvSpec(`e${i}`), wait: true })),
    );
    expect(envs.every((e) => e.status?.phase === EnvPhase.ENV_PHASE_RUNNING)).toBe(true);
    expect(agents.map((a) => a.runningCount())).toEqual([3, 3, 3]);
    const other = client(controllers[0]!.address);
    const listed = await call(other, "listEnvs", { node: "", group: "" });
    other.close();
    expect(listed.envs).toHaveLength(9);
    expect(new Set(listed.envs.map((e) => e.status?.node))).toEqual(new Set(["n1", "n2", "n3"]));
    const v = await call(c, "getVersion", {});
    expect(controllers.map((x) => x.id)).toContain(v.leader);
    expect(controllers.filter((x) => x.isLeader())).toHaveLength(1);
  });

  it("a full node sends placement elsewhere; a full cluster leaves the env Pending with per-node reasons", async () => {
    await setup([
      { name: "small", memoryBytes: 2 * GiB },
      { name: "big", memoryBytes: 4 * GiB },
    ]);
    const mem = { memoryBytes: 2 * GiB, cpus: 0, pids: 0, diskBytes: 0 };
    const a = await call(c, "createEnv", {
      spec: testEnvSpec("a", { resources: mem, node: "small" }),
      wait: true,
    });
    expect(a.status?.node).toBe("small");
    const b = await call(c, "createEnv", { spec: testEnvSpec("b", { resources: mem }), wait: true });
    expect(b.status?.node).toBe("big");
    const d = await call(c, "createEnv", { spec: testEnvSpec("d", { resources: mem }), wait: true });
    expect(d.status?.node).toBe("big");
    await call(c, "createEnv", { spec: testEnvSpec("e", { resources: mem }), wait: false });
    const pending = await eventually(async () => {
      const e = await call(c, "getEnv", { name: "e" });
      return e.status?.reasons.length ? e : undefined;
    });
    expect(pending.status?.phase).toBe(EnvPhase.ENV_PHASE_PENDING);
    expect(pending.status?.reasons.map((r) => r.node).sort()).toEqual(["big", "small"]);
    expect(pending.status?.reasons[0]?.reason).toMatch(/insufficient memory/);
    // freeing memory lets it run
    await call(c, "deleteEnv", { name: "a", wait: true });
    const e = await eventually(async () => {
      const x = await call(c, "getEnv", { name: "e" });
      return x.status?.phase === EnvPhase.ENV_PHASE_RUNNING ? x : undefined;
    });
    expect(e.status?.node).toBe("small");
  });

  it("turns a silent agent's node NotReady within the lease window, marks its envs Lost, recreates restart=ALWAYS ones elsewhere", async () => {
    await setup([{ name: "n1" }, { name: "n2" }]);
    await call(c, "createEnv", { spec: testEnvSpec("keep", { node: "n1" }), wait: true });
    // put "mover" on n1 as well (cordon n2 meanwhile); it may move when n1 dies
    await call(c, "cordonNode", { name: "n2" });
    const m0 = await call(c, "createEnv", {
      spec: testEnvSpec("mover", { restart: RestartPolicy.RESTART_POLICY_ALWAYS }),
      wait: true,
    });
    expect(m0.status?.node).toBe("n1");
    await call(c, "uncordonNode", { name: "n2" });
    const victim = agents.find((a) => a.name === "n1")!;
    const t0 = Date.now();
    await victim.leave();
    await eventually(
      async () => (await call(c, "getNode", { name: "n1" })).state === NodeState.NODE_STATE_NOT_READY,
      10_000,
      25,
    );
    const detectMs = Date.now() - t0;
    console.log(`node n1 NotReady ${detectMs} ms after its agent stopped heartbeating (lease TTL 2 s)`);
    const lost = await eventually(async () => {
      const e = await call(c, "getEnv", { name: "keep" });
      return e.status?.phase === EnvPhase.ENV_PHASE_LOST ? e : undefined;
    });
    expect(lost.status?.message).toMatch(/NotReady/);
    const mover = await eventually(async () => {
      const e = await call(c, "getEnv", { name: "mover" });
      return e.status?.phase === EnvPhase.ENV_PHASE_RUNNING && e.status.node === "n2" ? e : undefined;
    });
    expect(mover.status?.generation).toBe(2);
    expect(agents.find((a) => a.name === "n2")!.envs.has("mover")).toBe(true);
  });

  it("stops, starts and deletes through the agent; proxies exec and logs; refuses duplicates", async () => {
    await setup([{ name: "n1" }]);
    await call(c, "createEnv", { spec: testEnvSpec("web"), wait: true });
    await expect(call(c, "createEnv", { spec: testEnvSpec("web"), wait: false })).rejects.toMatchObject({
      code: Code.ALREADY_EXISTS,
    });
    const stopped = await call(c, "stopEnv", { name: "web", timeoutMs: 0, wait: true });
    expect(stopped.status?.phase).toBe(EnvPhase.ENV_PHASE_STOPPED);
    expect(agents[0]!.envs.get("web")?.status?.phase).toBe(EnvPhase.ENV_PHASE_STOPPED);
    const started = await call(c, "startEnv", { name: "web", wait: true });
    expect(started.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);

    const exec = c.execEnv();
    const out: string[] = [];
    let exit = -1;
    await new Promise<void>((resolve, reject) => {
      exec.on("data", (m) => {
        if (m.output?.$case === "stdout") out.push(Buffer.from(m.output.stdout).toString());
        if (m.output?.$case === "exitCode") exit = m.output.exitCode;
      });
      exec.on("end", resolve);
      exec.on("error", reject);
      exec.write({
        input: {
          $case: "start",
          start: ExecStart.fromPartial({ env: "web", command: ["echo", "hi"] }),
        },
      });
      exec.end();
    });
    expect(out.join("")).toBe("echo hi\n");
    expect(exit).toBe(0);

    const logs: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = c.envLogs({ env: "web", follow: false, tailLines: 0 });
      s.on("data", (l) => logs.push(Buffer.from(l.data).toString()));
      s.on("end", resolve);
      s.on("error", reject);
    });
    expect(logs.join("")).toContain("hello from web");

    await call(c, "deleteEnv", { name: "web", wait: true });
    expect(agents[0]!.envs.has("web")).toBe(false);
    await expect(call(c, "getEnv", { name: "web" })).rejects.toBeInstanceOf(ProtoctlError);

    const events: string[] = [];
    await new Promise<void>((resolve) => {
      const s = c.watchEvents({ sinceRevision: 0, kinds: ["env."] });
      s.on("data", (e) => {
        events.push(e.kind);
        if (e.kind === "env.deleted") {
          s.cancel();
          resolve();
        }
      });
      s.on("error", () => resolve());
    });
    expect(events).toEqual(
      expect.arrayContaining(["env.scheduled", "env.started", "env.stopped", "env.deleted"]),
    );
  });

  it("fails an env with the agent's reason when the agent refuses it, and retries transient errors", async () => {
    await setup([{ name: "n1" }]);
    agents[0]!.failNext("createEnv", Code.UNAVAILABLE, 2);
    const ok = await call(c, "createEnv", { spec: testEnvSpec("flaky"), wait: true });
    expect(ok.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    agents[0]!.failNext("createEnv", Code.FAILED_PRECONDITION, 1, "pool is broken");
    await expect(call(c, "createEnv", { spec: testEnvSpec("doomed"), wait: true })).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      reason: "ENV_FAILED",
    });
    const d = await call(c, "getEnv", { name: "doomed" });
    expect(d.status?.message).toContain("pool is broken");
  });

  it("refuses a spec it can tell is bad, or a layer it has no record of, before recording anything", async () => {
    await setup([{ name: "n1" }]);
    const tiny = testEnvSpec("tiny", {
      resources: { memoryBytes: 1024, cpus: 0, pids: 0, diskBytes: 0 },
    });
    await expect(call(c, "createEnv", { spec: tiny, wait: true })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      reason: "INVALID_RESOURCES",
      message: "memory limit below 8 MiB",
    });
    const tinyDisk = testEnvSpec("tinydisk", {
      resources: { memoryBytes: 0, cpus: 0, pids: 0, diskBytes: 4096 },
    });
    await expect(call(c, "createEnv", { spec: tinyDisk, wait: true })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: "disk limit below 1 MiB",
    });
    await expect(
      call(c, "createEnv", { spec: testEnvSpec("badvar", { env: { "1X": "y" } }), wait: true }),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    await expect(
      call(c, "createEnv", { spec: testEnvSpec("nolayer", { layers: ["nolayer"] }), wait: true }),
    ).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      reason: "LAYER_NOT_FOUND",
      message: "no layer named nolayer",
    });
    expect((await call(c, "listEnvs", { node: "", group: "" })).envs).toEqual([]);
    expect(agents[0]!.calls.get("createEnv") ?? 0).toBe(0);
  });

  it("cordon keeps new envs away; a version only a cordoned node holds: the failed push explains itself", async () => {
    await setup([{ name: "n1" }, { name: "n2", bases: ["debian@1", "debian@2"] }]);
    await call(c, "cordonNode", { name: "n2" });
    const e = await call(c, "createEnv", {
      spec: testEnvSpec("x", { base: { name: "debian", version: 1 } }),
      wait: true,
    });
    expect(e.status?.node).toBe("n1");
    await call(c, "createEnv", {
      spec: testEnvSpec("y", { base: { name: "debian", version: 2 } }),
      wait: false,
    });
    const y = await eventually(async () => {
      const r = await call(c, "getEnv", { name: "y" });
      return r.status?.reasons.length ? r : undefined;
    });
    expect(y.status?.reasons).toEqual(
      expect.arrayContaining([
        { node: "n2", reason: "node is cordoned" },
        // scheduler.propagation (on by default) tried to push debian@2 from n2 to n1; fake agents
        // cannot publish a seed, and the failure is n1's reason until it is retried
        {
          node: "n1",
          reason: expect.stringMatching(
            /debian@2 is not on this node and pushing it here failed: PublishSeed is not implemented/,
          ),
        },
      ]),
    );
    await call(c, "uncordonNode", { name: "n2" });
    await eventually(
      async () => (await call(c, "getEnv", { name: "y" })).status?.phase === EnvPhase.ENV_PHASE_RUNNING,
    );
    const bases = await call(c, "listBases", {});
    expect(bases.bases[0]?.versions.map((v) => [v.version, v.nodes.sort()])).toEqual([
      [1, ["n1", "n2"]],
      [2, ["n2"]],
    ]);
  });

  it("a node's new base version reaches the controller at once, not at its next heartbeat", async () => {
    prefix = uniquePrefix();
    // Heartbeats a minute apart: the version can only arrive through the agent's early beat on a
    // change (no timing asserted: the next heartbeat is far beyond the wait).
    const over = { membership: { leaseTtlSeconds: 120, heartbeatIntervalMs: 60_000 } };
    controllers = [await startTestController(etcd.endpoint, prefix, over)];
    c = client(controllers[0]!.address);
    const { token } = await call(c, "createJoinToken", { ttlSeconds: 60, labels: {}, ...REUSABLE });
    const a = await startFakeAgent({ name: "slowbeat" });
    agents = [a];
    await a.join(controllers[0]!.address, token, { intervalMs: 60_000 });
    await eventually(
      async () => (await call(c, "listNodes", {})).nodes[0]?.state === NodeState.NODE_STATE_READY,
    );
    // sealed by the controller (built on another node, pushed here)
    await sealFakeBases({ endpoint: etcd.endpoint, prefix }, [
      { name: "builder", bases: ["fresh@1"] },
      { name: "slowbeat", bases: ["fresh@1"] },
    ]);
    a.addBase("fresh@1");
    await eventually(
      async () => (await call(c, "listNodes", {})).nodes[0]?.baseVersions.includes("fresh@1"),
      20_000,
      10,
    );
  });

  it("a node's report of a version the controller never sealed is foreign: not latest, not placed on, not pushed", async () => {
    await setup([{ name: "n1" }, { name: "n2" }]);
    // n2 is compromised: it claims debian@9 (never sealed) and its own debian@1 is not the sealed one
    const rogue = agents[1]!;
    rogue.addBase("debian@9");
    await eventually(async () => {
      const n = await call(c, "getNode", { name: "n2" });
      return n.foreignBaseVersions.includes("debian@9");
    });
    expect((await call(c, "getNode", { name: "n2" })).baseVersions).not.toContain("debian@9");
    const base = await call(c, "getBase", { name: "debian" });
    expect(base.latest).toBe(1);
    const v9 = base.versions.find((v) => v.version === 9);
    expect(v9).toMatchObject({ foreign: true, foreignNodes: ["n2"], nodes: [] });
    expect(base.versions.find((v) => v.version === 1)?.nodes.sort()).toEqual(["n1", "n2"]);
    // "latest" placements use debian@1, never the foreign @9
    const e = await call(c, "createEnv", { spec: testEnvSpec("latest-one"), wait: true });
    expect(e.status?.baseVersion).toBe(1);
    // a pinned @9 was never sealed: the create is refused (it could never be placed), nothing is
    // pushed from n2, and no env is left behind
    await expect(
      call(c, "createEnv", {
        spec: testEnvSpec("pinned9", { base: { name: "debian", version: 9 } }),
        wait: false,
      }),
    ).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      reason: "BASE_NOT_FOUND",
      message: "no base named debian@9",
    });
    expect((await call(c, "listEnvs", { node: "", group: "" })).envs.map((e) => e.spec?.name)).toEqual([
      "latest-one",
    ]);
    const push = await streamed(
      c.pushBase({
        ref: { name: "debian", version: 9 },
        nodes: ["n1"],
        all: false,
        selector: {},
        fanout: 0,
        transport: "",
        waitLocal: false,
      }),
    ).catch((err) => err);
    expect(push).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "NOT_SEALED" });
  });

  it("drain moves restart=ALWAYS envs elsewhere and reports the ones it leaves", async () => {
    await setup([{ name: "n1" }, { name: "n2" }]);
    await call(c, "cordonNode", { name: "n2" });
    await call(c, "createEnv", {
      spec: testEnvSpec("movable", { restart: RestartPolicy.RESTART_POLICY_ALWAYS }),
      wait: true,
    });
    await call(c, "createEnv", { spec: testEnvSpec("stays"), wait: true });
    await call(c, "uncordonNode", { name: "n2" });
    const messages: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = c.drainNode({ name: "n1" });
      s.on("data", (e) => {
        if (e.event?.$case === "progress") messages.push(e.event.progress.message);
      });
      s.on("end", resolve);
      s.on("error", reject);
    });
    expect(messages.at(-1)).toMatch(/drained; 1 env\(s\) without restart policy stay until deleted: stays/);
    const moved = await call(c, "getEnv", { name: "movable" });
    expect(moved.status).toMatchObject({ node: "n2", phase: EnvPhase.ENV_PHASE_RUNNING });
    expect(agents[0]!.envs.has("movable")).toBe(false);
    const n1 = await call(c, "getNode", { name: "n1" });
    expect([n1.cordoned, n1.draining]).toEqual([true, true]);
    await call(c, "uncordonNode", { name: "n1" });
    expect((await call(c, "getNode", { name: "n1" })).draining).toBe(false);
  });
});
