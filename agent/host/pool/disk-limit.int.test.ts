import { dirname } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "../../../common/exec.js";
import { type Env, EnvSpec } from "../../../proto/gen/protoctl/v1/types.js";
import {
  type AgentClient,
  type BusyboxAgent,
  execOverGrpc,
  startBusyboxAgent,
  unary,
} from "../../../test/support/agent/agent-client.js";
import type { RunningAgent } from "../../main.js";
import { subvolumeIdOf, subvolumeUsage } from "./disk-limit.js";

const NODE = `dl${process.pid}`;
const MiB = 2 ** 20;
let bed: BusyboxAgent;
let agent: RunningAgent;
let client: AgentClient;

beforeAll(async () => {
  bed = await startBusyboxAgent({ name: NODE, poolMiB: 512 });
  ({ agent, client } = bed);
});

afterAll(async () => {
  await bed?.close();
});

const create = async (name: string, diskBytes: number) => {
  const t0 = performance.now();
  const env = await unary<object, Env>(client, "createEnv", {
    spec: EnvSpec.fromPartial({
      name,
      base: { name: "busybox", version: 0 },
      start: true,
      resources: { memoryBytes: 0, cpus: 0, pids: 0, diskBytes },
    }),
    generation: 1,
  });
  return { env, ms: performance.now() - t0 };
};

const fill = (env: string, mib: number) =>
  execOverGrpc(client, {
    env,
    command: [
      "/bin/sh",
      "-c",
      `dd if=/dev/zero of=/root/fill bs=1048576 count=${mib} 2>&1; sync; stat -c %s /root/fill`,
    ],
  });

it("--disk 64M: EDQUOT inside at the limit, the neighbour writes on, usage readable", async () => {
  const plain = await create("plain", 0);
  const capped = await create("capped", 64 * MiB);
  const capped2 = await create("capped-2", 64 * MiB);
  try {
    console.log(
      `create: no limit ${plain.ms.toFixed(0)} ms, first limited (enables quotas) ${capped.ms.toFixed(0)} ms, next limited ${capped2.ms.toFixed(0)} ms`,
    );
    const full = await fill("capped", 100);
    expect(full.stdout).toMatch(/Disk quota exceeded|No space left/);
    const size = Number(full.stdout.trim().split("\n").pop());
    expect(size).toBeGreaterThan(32 * MiB);
    expect(size).toBeLessThanOrEqual(64 * MiB);
    const free = await fill("plain", 100);
    expect(free.stdout).not.toMatch(/quota|No space/);
    expect(Number(free.stdout.trim().split("\n").pop())).toBe(100 * MiB);
    // the other limited env is unharmed by its neighbour's full quota
    const other = await fill("capped-2", 10);
    expect(Number(other.stdout.trim().split("\n").pop())).toBe(10 * MiB);
    const root = agent.ctx.envs.rootDirOf("capped");
    const u = await subvolumeUsage(root, root);
    expect(u?.maxReferenced).toBe(64 * MiB);
    expect(u!.referenced).toBeGreaterThan(32 * MiB);
    expect(u!.referenced).toBeLessThanOrEqual(64 * MiB);
  } finally {
    for (const n of ["plain", "capped", "capped-2"])
      await unary(client, "deleteEnv", { name: n }).catch(() => undefined);
  }
}, 120_000);

it("env delete drops the env's qgroup (no stale qgroup, with its limit, per deleted env)", async () => {
  await create("gone", 32 * MiB);
  let deleted = false;
  try {
    await fill("gone", 8);
    const root = agent.ctx.envs.rootDirOf("gone");
    const id = await subvolumeIdOf(root);
    expect(id).toBeGreaterThan(255);
    const qgroups = async () =>
      (await run("btrfs", ["qgroup", "show", "-re", "--raw", dirname(dirname(root))])).stdout;
    expect(await qgroups()).toMatch(new RegExp(`^0/${id}\\s`, "m"));
    await unary(client, "deleteEnv", { name: "gone" });
    deleted = true;
    // the kernel (6.10+) drops it once btrfs's cleaner has removed the subvolume; older
    // kernels: the pool destroys it before the delete answers
    await run("btrfs", ["subvolume", "sync", dirname(dirname(root))]);
    await eventuallyGone(qgroups, new RegExp(`^0/${id}\\s`, "m"));
    expect(await qgroups()).not.toMatch(new RegExp(`^0/${id}\\s`, "m"));
  } finally {
    if (!deleted) await unary(client, "deleteEnv", { name: "gone" }).catch(() => undefined);
  }
}, 120_000);

async function eventuallyGone(read: () => Promise<string>, re: RegExp): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (re.test(await read()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
}
