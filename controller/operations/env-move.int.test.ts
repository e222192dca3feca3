/**
 * Issue 22 item 5 on real agents (network-namespace hosts, TLS controller):
 * a file written in an env is there after `env move` to another node, the
 * env runs there, and the source node keeps nothing of it (no env dir, no
 * subvolume, no machine process). Then `node drain` moves a restart=always
 * env with its filesystem instead of recreating it empty.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { output } from "../../common/exec.js";
import { processesNaming } from "../../common/state-cleanup.js";
import { EnvPhase, RestartPolicy } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { call, eventually, streamed, testEnvSpec } from "../../test/support/controller/cluster.js";
import {
  type PropagationCluster,
  startPropagationCluster,
} from "../../test/support/controller/propagation-cluster.js";

let cl: PropagationCluster;
let rootfs: string;

const poolOf = (node: string) => join(cl.dir, `agent-${node}`, "pool", "mnt");

/** What of env `name` node `node` still holds: its env dir, subvolumes naming it, processes in its root. */
async function leftOn(node: string, name: string): Promise<string[]> {
  const pool = poolOf(node);
  const out: string[] = [];
  if (existsSync(join(pool, "@env", name))) out.push(`@env/${name}`);
  const subs = await output("btrfs", ["subvolume", "list", pool]);
  for (const l of subs.split("\n")) if (l.includes(`@env/${name}/`)) out.push(l.trim());
  if (processesNaming(join(pool, "@env", name)).length) out.push("processes");
  return out;
}

beforeAll(async () => {
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-move-rootfs-"));
  await makeBusyboxRootfs(rootfs);
  cl = await startPropagationCluster({ agents: 2 });
  await cl.importBase("a1", "mv", rootfs);
}, 300_000);

afterAll(async () => {
  if (cl) {
    for (const n of ["moved", "drained"]) {
      await call(cl.c, "deleteEnv", { name: n, wait: true }, 60_000).catch(() => undefined);
    }
    await cl.cleanup();
  }
  if (rootfs) await rm(rootfs, { recursive: true, force: true });
}, 180_000);

it("env move carries a file written in the env to another node, where it runs; the source keeps nothing", async () => {
  await cl.createEnv("moved", "mv", 1, "a1");
  const w = await cl.exec("moved", ["/bin/sh", "-c", "echo carried-over > /moved.txt"]);
  expect(w.exit).toBe(0);
  const t0 = performance.now();
  const env = await call(cl.c, "moveEnv", { name: "moved", to: "a2", live: false }, 240_000);
  console.log(`env move a1 → a2: ${Math.round(performance.now() - t0)} ms`);
  expect(env.status?.node).toBe("a2");
  expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
  const r = await cl.exec("moved", ["/bin/cat", "/moved.txt"]);
  expect(r.stdout.trim()).toBe("carried-over");
  expect(await leftOn("a1", "moved")).toEqual([]);
  // the target adopted it as an env of its own (not a half-received copy)
  expect(existsSync(join(poolOf("a2"), "@env", "moved", "root", "moved.txt"))).toBe(true);
}, 300_000);

it("--live is refused with a clear error, and nothing changes", async () => {
  const err = await call(cl.c, "moveEnv", { name: "moved", to: "a1", live: true }).catch((e) => e);
  expect(err.reason).toBe("LIVE_MOVE_UNSUPPORTED");
  const env = await call(cl.c, "getEnv", { name: "moved" });
  expect(env.status?.node).toBe("a2");
  expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
});

it("node drain moves a restart=always env with its filesystem", async () => {
  await call(cl.c, "deleteEnv", { name: "moved", wait: true }, 60_000);
  await call(
    cl.c,
    "createEnv",
    {
      spec: testEnvSpec("drained", {
        base: { name: "mv", version: 1 },
        node: "",
        nodeSelector: {},
        restart: RestartPolicy.RESTART_POLICY_ALWAYS,
      }),
      wait: true,
    },
    120_000,
  );
  const from = (await call(cl.c, "getEnv", { name: "drained" })).status!.node;
  const to = from === "a1" ? "a2" : "a1";
  expect((await cl.exec("drained", ["/bin/sh", "-c", "echo kept > /drained.txt"])).exit).toBe(0);
  try {
    await streamed(cl.c.drainNode({ name: from }));
    const env = await eventually(async () => {
      const e = await call(cl.c, "getEnv", { name: "drained" });
      return e.status?.node === to && e.status.phase === EnvPhase.ENV_PHASE_RUNNING ? e : undefined;
    }, 120_000);
    expect(env.status?.node).toBe(to);
    expect((await cl.exec("drained", ["/bin/cat", "/drained.txt"])).stdout.trim()).toBe("kept");
    // the move's last step, after the env runs on the target: the source copy goes
    const left = await eventually(async () => {
      const l = await leftOn(from, "drained");
      return l.length === 0 ? l : undefined;
    }, 60_000).catch(async () => leftOn(from, "drained"));
    expect(left).toEqual([]);
  } finally {
    await call(cl.c, "uncordonNode", { name: from });
  }
}, 300_000);
