/**
 * EnvService on the in-memory drivers (test/fakes/): the create/start/stop/
 * delete life cycle, what a failed step undoes, the startup inventory, limits
 * and networks. The fakes pass the same contract suites as the real drivers.
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Code, failedPrecondition, internal } from "../../common/errors.js";
import { silentLogger } from "../../common/logger.js";
import { type Env, EnvPhase, EnvSpec, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import { expectCode } from "../../test/contracts/expect-code.js";
import { FakeMachines } from "../../test/fakes/fake-machines.js";
import { FakePool } from "../../test/fakes/fake-pool.js";
import { EnvService } from "./env-service.js";

let stateDir: string;
let pool: FakePool;
let machines: FakeMachines;
let envs: EnvService;

const service = (m: FakeMachines = machines) =>
  new EnvService({
    node: "n1",
    stateDir,
    pool,
    machines: m,
    logger: silentLogger(),
    deleteStopTimeoutMs: 100,
  });

const spec = (name: string, over: Partial<EnvSpec> = {}): EnvSpec =>
  EnvSpec.fromPartial({ name, base: { name: "deb", version: 0 }, start: true, ...over });

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-env-service-"));
  pool = new FakePool();
  await pool.importBase("deb", { dir: "/x" });
  await pool.importBase("deb", { dir: "/x" });
  machines = new FakeMachines();
  envs = service();
  await envs.init();
});

afterEach(async () => {
  await pool.destroy();
  await rm(stateDir, { recursive: true, force: true });
});

/** Nothing of env `name` is left in either driver nor in the service. */
async function expectNothingOf(name: string): Promise<void> {
  expect((await pool.listEnvRoots()).map((r) => r.name)).not.toContain(name);
  expect((await machines.list()).map((m) => m.name)).not.toContain(name);
  expect(machines.prewarmedNames()).not.toContain(name);
  expect(envs.names()).not.toContain(name);
  await expectCode(envs.get(name), Code.NOT_FOUND, "ENV_NOT_FOUND");
}

describe("EnvService create", () => {
  it("prepares the root on the latest base version, writes its files and starts the machine", async () => {
    const env = await envs.create(
      spec("web", {
        hostname: "www",
        files: [{ path: "/etc/app.conf", content: Buffer.from("x=1\n"), mode: 0o600 }],
        resources: { memoryBytes: 64 * 2 ** 20, cpus: 1, pids: 100, diskBytes: 0 },
      }),
      7,
    );
    expect(env.status).toMatchObject({
      phase: EnvPhase.ENV_PHASE_RUNNING,
      node: "n1",
      baseVersion: 2,
      generation: 7,
    });
    expect(env.status!.leaderPid).toBeGreaterThan(0);
    const root = (await pool.openEnvRoot("web"))!;
    expect(root).toMatchObject({ base: "deb", version: 2 });
    expect(await readFile(join(root.rootDir, "etc/hostname"), "utf8")).toBe("www\n");
    expect(await readFile(join(root.rootDir, "etc/hosts"), "utf8")).toContain("127.0.1.1\twww");
    expect(await readFile(join(root.rootDir, "etc/app.conf"), "utf8")).toBe("x=1\n");
    expect((await stat(join(root.rootDir, "etc/app.conf"))).mode & 0o777).toBe(0o600);
    expect(machines.specOf("web")).toMatchObject({
      rootDir: root.rootDir,
      hostname: "www",
      limits: { memoryBytes: 64 * 2 ** 20, cpus: 1, pids: 100 },
    });
    // the cgroups were readied before the root (prewarm), then taken by the start
    expect(machines.faults.calls.indexOf("prewarm:web")).toBeLessThan(
      machines.faults.calls.indexOf("start:web"),
    );
    expect(machines.prewarmedNames()).toEqual([]);
  });

  it("returns the env as is for the same spec, and refuses another spec under the name", async () => {
    await envs.create(spec("a"));
    const again = await envs.create(spec("a"));
    expect(again.status!.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    expect(pool.faults.callsOf("prepareEnvRoot")).toEqual(["a"]);
    await expectCode(envs.create(spec("a", { hostname: "other" })), Code.ALREADY_EXISTS, "NAME_IN_USE");
  });

  it("joins a second identical create while the first runs, and refuses a different spec under the name", async () => {
    // A new leader may repeat the placement its dead predecessor sent: the same env, made once.
    const [first, second] = await Promise.all([envs.create(spec("race")), envs.create(spec("race"))]);
    expect(second).toEqual(first);
    expect(machines.faults.callsOf("start")).toHaveLength(1);
    const [, other] = await Promise.allSettled([
      envs.create(spec("race2")),
      envs.create(spec("race2", { start: false })),
    ]);
    expect(other.status).toBe("rejected");
    expect((other as PromiseRejectedResult).reason.code).toBe(Code.ALREADY_EXISTS);
  });

  it("creates without starting when the spec says so", async () => {
    const env = await envs.create(spec("cold", { start: false }));
    expect(env.status!.phase).toBe(EnvPhase.ENV_PHASE_CREATED);
    expect((await machines.state("cold")).running).toBe(false);
    expect(machines.faults.callsOf("prewarm")).toEqual([]);
  });

  it("refuses a bad spec or an unknown base before making anything", async () => {
    await expectCode(
      envs.create(spec("bad", { files: [{ path: "../x", content: Buffer.from(""), mode: 0 }] })),
      Code.INVALID_ARGUMENT,
      "INVALID_PATH",
    );
    await expectCode(
      envs.create(spec("bad", { base: { name: "nothing", version: 0 } })),
      Code.NOT_FOUND,
      "BASE_NOT_FOUND",
    );
    await expectCode(envs.create(spec("Bad")), Code.INVALID_ARGUMENT, "INVALID_NAME");
    expect(pool.faults.callsOf("prepareEnvRoot")).toEqual([]);
    await expectNothingOf("bad");
  });

  it("undoes the root and the machine when the start fails, and a retry then works", async () => {
    machines.faults.failNext("start", internal("nspawn died"));
    await expectCode(envs.create(spec("flaky")), Code.INTERNAL);
    await expectNothingOf("flaky");
    expect((await envs.create(spec("flaky"))).status!.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
  });

  it("undoes everything when the root cannot be prepared", async () => {
    pool.faults.failNext("prepareEnvRoot", failedPrecondition("pool full"));
    await expectCode(envs.create(spec("noroot")), Code.FAILED_PRECONDITION);
    await expectNothingOf("noroot");
  });

  it("fails a create whose startup command fails, with its output, and leaves nothing", async () => {
    machines.onExec = (req) =>
      req.command.at(-1) === "setup" ? { stdout: "working\n", stderr: "setup: boom\n", code: 4 } : undefined;
    let err: unknown;
    await envs.create(spec("boot", { startup: ["true", "setup"] })).catch((e) => {
      err = e;
    });
    expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "STARTUP_FAILED" });
    expect((err as { output: string }).output).toContain("setup: boom");
    expect(machines.faults.callsOf("exec")).toEqual(["boot", "boot"]);
    await expectNothingOf("boot");
  });

  it("refuses limits the node cannot enforce and leaves nothing", async () => {
    machines.unenforceable.add("memoryBytes");
    await expectCode(
      envs.create(spec("big", { resources: { memoryBytes: 64 * 2 ** 20, cpus: 0, pids: 0, diskBytes: 0 } })),
      Code.FAILED_PRECONDITION,
      "LIMITS_UNENFORCEABLE",
    );
    await expectNothingOf("big");
  });

  it("hands the network to the machine and reports the env's addresses and hosts", async () => {
    const env = await envs.create(
      spec("net", {
        network: {
          mode: NetworkMode.NETWORK_MODE_PRIVATE,
          attachments: [{ mode: 0, bridge: "", address: "10.7.0.2/24", gateway: "", interfaceName: "" }],
          ports: [{ protocol: "tcp", hostPort: 18080, containerPort: 80 }],
          hosts: { db: "10.7.0.3" },
          nat: false,
        },
      }),
    );
    expect(env.status!.addresses).toEqual(["10.7.0.2"]);
    expect(machines.specOf("net")!.network).toMatchObject({
      mode: "private",
      address: "10.7.0.2/24",
      ports: [{ protocol: "tcp", hostPort: 18080, containerPort: 80 }],
    });
    const root = (await pool.openEnvRoot("net"))!;
    expect(await readFile(join(root.rootDir, "etc/hosts"), "utf8")).toContain("10.7.0.3\tdb");
  });
});

describe("EnvService life cycle", () => {
  it("stops, starts again, and reports a machine that died as stopped", async () => {
    const seen: Env[] = [];
    const unwatch = envs.watch((e) => seen.push(e));
    await envs.create(spec("life"));
    expect((await envs.stop("life")).status!.phase).toBe(EnvPhase.ENV_PHASE_STOPPED);
    expect((await machines.state("life")).running).toBe(false);
    expect((await envs.start("life")).status!.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    // a second start of a running env changes nothing
    const starts = machines.faults.callsOf("start").length;
    await envs.start("life");
    expect(machines.faults.callsOf("start").length).toBe(starts);
    machines.crash("life");
    expect((await envs.get("life")).status!.phase).toBe(EnvPhase.ENV_PHASE_STOPPED);
    unwatch();
    expect(seen.map((e) => e.status!.phase)).toEqual([
      EnvPhase.ENV_PHASE_RUNNING,
      EnvPhase.ENV_PHASE_STOPPED,
      EnvPhase.ENV_PHASE_RUNNING,
    ]);
  });

  it("marks an env failed when its start fails, and a later start recovers it", async () => {
    await envs.create(spec("sick", { start: false }));
    machines.faults.failNext("start", internal("no"));
    await expectCode(envs.start("sick"), Code.INTERNAL);
    expect((await envs.get("sick")).status).toMatchObject({
      phase: EnvPhase.ENV_PHASE_FAILED,
      message: "no",
    });
    expect((await envs.start("sick")).status!.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
  });

  it("deletes: stops the machine, cleans it up, removes the root and tells watchers", async () => {
    await envs.create(spec("gone"));
    const phases: EnvPhase[] = [];
    const unwatch = envs.watch((e) => phases.push(e.status!.phase));
    await envs.delete("gone");
    unwatch();
    expect(phases).toEqual([EnvPhase.ENV_PHASE_DELETING]);
    await expectNothingOf("gone");
    await expectCode(envs.delete("gone"), Code.NOT_FOUND);
  });

  it("runs execs in the env, with a login shell by default, and refuses bad variables", async () => {
    await envs.create(spec("sh"));
    let seen: string[] = [];
    machines.onExec = (req) => {
      seen = req.command;
      return { code: 0 };
    };
    const start = {
      env: "sh",
      command: [],
      tty: false,
      login: true,
      envVars: {},
      workdir: "",
      rows: 0,
      cols: 0,
      user: "",
    };
    await envs.exec(start);
    expect(seen).toEqual(["/bin/sh", "-l"]);
    await expectCode(envs.exec({ ...start, envVars: { "A B": "1" } }), Code.INVALID_ARGUMENT, "INVALID_ENV");
    await envs.stop("sh");
    await expectCode(envs.exec(start), Code.FAILED_PRECONDITION, "ENV_NOT_RUNNING");
  });

  it("seals an env as a new base version on this node", async () => {
    await envs.create(spec("snap"));
    const v = await envs.snapshot("snap", "golden");
    expect(v).toMatchObject({ base: "golden", version: 1, nodes: ["n1"], parent: "deb@2" });
  });
});

describe("EnvService startup inventory", () => {
  it("keeps recorded envs, drops machines and roots without a record, fails envs whose root is gone", async () => {
    await envs.create(spec("kept"));
    await envs.create(spec("lost", { start: false }));
    // a half-made env of a killed agent: machine and root, no record
    await pool.prepareEnvRoot("half", "deb", 2, []);
    await machines.start({
      name: "half",
      rootDir: stateDir,
      boot: false,
      limits: {},
      network: { mode: "none" },
      env: {},
    });
    await pool.removeEnvRoot("lost");

    const restarted = service(new FakeMachines(machines));
    const r = await restarted.init();
    expect(r.adopted).toBe(1);
    expect(r.removed).toEqual(expect.arrayContaining(["machine:half", "@env/half"]));
    expect((await machines.list()).map((m) => m.name)).toEqual(["kept"]);
    expect((await restarted.list()).map((e) => [e.spec!.name, e.status!.phase])).toEqual([
      ["kept", EnvPhase.ENV_PHASE_RUNNING],
      ["lost", EnvPhase.ENV_PHASE_FAILED],
    ]);
    expect((await restarted.get("lost")).status!.message).toMatch(/root is gone/);
    // its machine cannot start without a root: the env stays failed
    await expectCode(restarted.start("lost"), Code.FAILED_PRECONDITION, "MACHINE_START_FAILED");
    expect((await restarted.get("lost")).status!.phase).toBe(EnvPhase.ENV_PHASE_FAILED);
  });
});
