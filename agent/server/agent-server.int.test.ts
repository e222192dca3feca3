/**
 * AgentService over real gRPC on a real tmpfs pool with a busybox base:
 * env lifecycle, exec streams and TTY, logs, limits, networks, bad input.
 */
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { iterateStream } from "../../common/grpc.js";
import { type Env, EnvPhase, EnvSpec, type LogLine, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import {
  type AgentClient,
  type BusyboxAgent,
  execOverGrpc,
  startBusyboxAgent,
  unary,
} from "../../test/support/agent/agent-client.js";
import { detectHierarchies, envCgroupSet } from "../host/machines/cgroups.js";
import { vethHostName } from "../host/machines/naming.js";
import { isAlive } from "../host/machines/proc.js";
import { NetworkDriver } from "../host/networks/network-driver.js";
import type { RunningAgent } from "../main.js";

const NODE = `it${process.pid}`;
let bed: BusyboxAgent;
let agent: RunningAgent;
let client: AgentClient;

function spec(name: string, over: Partial<EnvSpec> = {}): EnvSpec {
  return EnvSpec.fromPartial({ name, base: { name: "busybox", version: 0 }, start: true, ...over });
}

const create = (s: EnvSpec) => unary<object, Env>(client, "createEnv", { spec: s, generation: 1 });
const del = (name: string) => unary(client, "deleteEnv", { name });

beforeAll(async () => {
  bed = await startBusyboxAgent({ name: NODE, poolMiB: 512 });
  ({ agent, client } = bed);
});

afterAll(async () => {
  await bed?.close();
});

describe("AgentService envs", () => {
  it("create → start → exec → logs → stop → delete, leaving nothing", async () => {
    const env = await create(
      spec("life", {
        env: { WHO: "agent" },
        resources: { memoryBytes: 64 * 2 ** 20, cpus: 0, pids: 0, diskBytes: 0 },
      }),
    );
    expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    const leader = env.status!.leaderPid;
    expect(leader).toBeGreaterThan(1);

    const t0 = performance.now();
    expect((await execOverGrpc(client, { env: "life", command: ["true"] })).code).toBe(0);
    console.log(`grpc exec true: ${(performance.now() - t0).toFixed(1)} ms`);

    const out = await execOverGrpc(client, {
      env: "life",
      command: ["sh", "-c", 'echo "hi $WHO $(cat /etc/hostname)"; echo oops >&2; exit 3'],
    });
    expect(out).toMatchObject({ stdout: "hi agent life\n", stderr: "oops\n", code: 3 });
    expect(out.pid).toBeGreaterThan(0);

    expect((await execOverGrpc(client, { env: "life", command: ["cat"] }, { input: "ping\n" })).stdout).toBe(
      "ping\n",
    );

    const tty = await execOverGrpc(
      client,
      { env: "life", command: ["sh"], tty: true, rows: 24, cols: 80 },
      {
        onStarted: (send) => {
          send({ input: { $case: "resize", resize: { rows: 33, cols: 111 } } });
          setTimeout(
            () => send({ input: { $case: "stdin", stdin: Buffer.from("stty size; exit 4\n") } }),
            100,
          );
        },
      },
    );
    expect(tty.stdout).toMatch(/33 111/);
    expect(tty.code).toBe(4);

    // memory limit: allocation past 64 MiB is OOM-killed
    const oom = await execOverGrpc(client, {
      env: "life",
      command: ["sh", "-c", "head -c 209715200 /dev/zero | tail"],
    });
    expect(oom.code).toBe(137);

    await execOverGrpc(client, { env: "life", command: ["sh", "-c", "echo console-line > /proc/1/fd/1"] });
    const lines: LogLine[] = [];
    for await (const l of iterateStream(client.logs({ env: "life", follow: false, tailLines: 0 })))
      lines.push(l as LogLine);
    expect(Buffer.concat(lines.map((l) => l.data)).toString()).toMatch(/console-line/);

    const stopped = await unary<object, Env>(client, "stopEnv", {
      name: "life",
      timeoutMs: 3000,
      force: false,
    });
    expect(stopped.status?.phase).toBe(EnvPhase.ENV_PHASE_STOPPED);
    expect(isAlive(leader)).toBe(false);
    const again = await unary<object, Env>(client, "startEnv", { name: "life" });
    expect(again.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);

    await del("life");
    await expect(unary(client, "getEnv", { name: "life" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    const set = envCgroupSet(detectHierarchies(), NODE, "life");
    for (const d of Object.values(set.dirs)) expect(existsSync(d)).toBe(false);
    expect(await readdir(join(agent.ctx.pool.mountpoint, "@env"))).not.toContain("life");
    expect(isAlive(again.status!.leaderPid)).toBe(false);
  });

  it("gives a private network its address inside, and removes the veth on delete", async () => {
    await create(
      spec("netty", {
        network: {
          mode: NetworkMode.NETWORK_MODE_PRIVATE,
          attachments: [
            {
              mode: NetworkMode.NETWORK_MODE_PRIVATE,
              bridge: "",
              address: "10.214.3.2/24",
              gateway: "",
              interfaceName: "",
            },
          ],
          ports: [],
          hosts: { db: "10.214.3.9" },
          nat: false,
        },
      }),
    );
    const r = await execOverGrpc(client, {
      env: "netty",
      command: ["sh", "-c", "ip -4 addr show host0; cat /etc/hosts"],
    });
    expect(r.stdout).toMatch(/10\.214\.3\.2\/24/);
    expect(r.stdout).toMatch(/10\.214\.3\.9\tdb/);
    const veth = vethHostName(NODE, "netty");
    expect(await new NetworkDriver().linkExists(veth)).toBe(true);
    await del("netty");
    expect(await new NetworkDriver().linkExists(veth)).toBe(false);
  });

  it("rejects bad input with clear codes and changes nothing", async () => {
    await expect(create(spec("Bad_Name"))).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      reason: "INVALID_NAME",
    });
    await expect(create(spec("nobase", { base: { name: "missing", version: 0 } }))).rejects.toMatchObject({
      code: Code.NOT_FOUND,
    });
    await expect(
      create(spec("badfile", { files: [{ path: "../../etc/x", content: Buffer.from("x"), mode: 0 }] })),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
    });
    await create(spec("taken", { start: false }));
    // same spec again: idempotent; different spec: ALREADY_EXISTS
    expect((await create(spec("taken", { start: false }))).status?.phase).toBe(EnvPhase.ENV_PHASE_CREATED);
    await expect(create(spec("taken", { boot: true }))).rejects.toMatchObject({
      code: Code.ALREADY_EXISTS,
      reason: "NAME_IN_USE",
    });
    await expect(execOverGrpc(client, { env: "taken", command: ["true"] })).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
    });
    await expect(create(spec("failing", { startup: ["echo nope; exit 7"] }))).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      reason: "STARTUP_FAILED",
    });
    const names = (await unary<object, { envs: Env[] }>(client, "listEnvs", {})).envs.map(
      (e) => e.spec?.name,
    );
    expect(names).toEqual(["taken"]);
    expect(await readdir(join(agent.ctx.pool.mountpoint, "@env"))).toEqual(["taken"]);
    await del("taken");
    // propagation RPCs validate their input like the rest
    await expect(unary(client, "getAttachment", {})).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      reason: "INVALID_NAME",
    });
  });
});
