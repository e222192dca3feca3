/**
 * A pool filling up, through the controller, on real agents with a small
 * pool (192 MiB): a base import larger than the pool, an env create whose
 * layer build fills it, and two versions pushed at once to a node (f1, its
 * state dir a 256 MiB tmpfs) with room to hydrate one of them. Each fails
 * with a clear RESOURCE_EXHAUSTED ("pool is full"; the env: FAILED saying
 * so), leaves nothing half-made in the pool or on the host (no version, no
 * attachment, no partial copy), the envs already there keep running, none
 * is lost or running twice, and the node takes new envs afterwards.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { freeBytes } from "../../agent/host/attachments/hydrate.js";
import { Code, ProtoctlError } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase, EnvPhase, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";
import {
  call,
  eventually,
  execIn,
  importBaseFromDir,
  streamed,
  testEnvSpec,
} from "../support/controller/cluster.js";
import { type FaultCluster, startFaultCluster } from "./fault-cluster.js";
import { machinesOnHosts, orphans } from "./host-view.js";

let cl: FaultCluster;
/** A version on f0 only, left by the concurrent-push case for the next one. */
let spare: string | undefined;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-poolfull-"));
  // f1's disk holds one hydrated image of the size pushed below (134 MiB + 64 MiB of margin), not two
  cl = await startFaultCluster({ agents: 2, poolSize: "192M", stateDirMiB: { 1: 256 } });
}, 240_000);

afterAll(async () => {
  await cl?.stop();
  await rm(dir, { recursive: true, force: true });
}, 120_000);

/** Entries of a pool area (below the agent's btrfs mount), `.tmp-*` included. */
async function area(name: string, sub = "", node = cl.nodes[0]!): Promise<string[]> {
  const stateDir = cl.agentDirs.get(node)!;
  const mounts = (await run("findmnt", ["-rn", "-t", "btrfs", "-o", "TARGET"])).stdout.split("\n");
  const pool = mounts.find((m) => m.startsWith(`${stateDir}/`));
  if (!pool) throw new Error("the agent's pool is not mounted");
  return (await readdir(join(pool, name, sub)).catch(() => [] as string[])).sort();
}

it("a base import larger than the pool: RESOURCE_EXHAUSTED, nothing half-made", async () => {
  const node = cl.nodes[0]!;
  const src = join(dir, "big");
  await mkdir(join(src, "data"), { recursive: true });
  await run("dd", [
    "if=/dev/urandom",
    `of=${join(src, "data", "blob")}`,
    "bs=1M",
    "count=256",
    "status=none",
  ]);
  const before = await area("@base");
  const err = await importBaseFromDir(cl.c(), node, "big", src).then(
    () => undefined,
    (e: unknown) => ProtoctlError.from(e),
  );
  expect(err?.code, err?.message).toBe(Code.RESOURCE_EXHAUSTED);
  expect(err?.message).toMatch(/pool is full|no room|space/i);
  // nothing half-made: no new entry (not even a .tmp-* one) and no version recorded
  expect(await area("@base")).toEqual(before);
  const base = await call(cl.c(), "getBase", { name: "big" }).catch(() => undefined);
  expect(base?.versions ?? []).toEqual([]);
}, 300_000);

it("an env whose layer build fills the pool: FAILED as RESOURCE_EXHAUSTED, nothing half-made, pool usable", async () => {
  const node = cl.nodes[0]!;
  await streamed(
    cl.c().addLayer({
      layer: {
        name: "fill",
        recipe: {
          kind: RecipeKind.RECIPE_KIND_SHELL,
          main: Buffer.from("dd if=/dev/zero of=/fill bs=1M count=400\n"),
          files: [],
        },
        parents: [],
      },
      buildOn: [],
    }),
  );
  const spec = testEnvSpec("pf-layer", { base: { name: "busybox", version: 0 }, node, layers: ["fill"] });
  const env = await call(cl.c(), "createEnv", { spec, wait: true }, 240_000).catch((e: unknown) => e);
  const got = await call(cl.c(), "getEnv", { name: "pf-layer" });
  expect(got.status?.phase, JSON.stringify(env)).toBe(EnvPhase.ENV_PHASE_FAILED);
  expect(got.status?.message).toMatch(/pool is full/i);
  // nothing half-made: no layer build kept, no env root, no scratch, no machine
  expect((await area("@overlay", "fill")).filter((e) => e !== "recipe.json")).toEqual([]);
  expect(await area("@env")).toEqual([]);
  expect((await area("@workdir")).filter((e) => e.startsWith(".tmp-"))).toEqual([]);
  expect((await machinesOnHosts(cl.nodes)).has("pf-layer")).toBe(false);
  await call(cl.c(), "deleteEnv", { name: "pf-layer", wait: true }, 60_000);
  await call(cl.c(), "deleteLayer", { name: "fill" });

  // the pool is usable after: a plain env runs there
  const ok = testEnvSpec("pf-ok", { base: { name: "busybox", version: 0 }, node });
  const e = await call(cl.c(), "createEnv", { spec: ok, wait: true }, 120_000);
  expect(e.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
  expect((await execIn(cl.c(), "pf-ok", ["echo", "fine"])).stdout).toBe("fine\n");
  await call(cl.c(), "deleteEnv", { name: "pf-ok", wait: true }, 60_000);
  await eventually(async () => (await orphans(cl, new Map())).length === 0, 30_000, 200);
}, 300_000);

/** A busybox base directory with `mib` MiB of random data (its seed image cannot be sparse). */
async function randomBase(name: string, mib: number): Promise<string> {
  const src = join(dir, name);
  await makeBusyboxRootfs(src);
  await mkdir(join(src, "data"), { recursive: true });
  await run("dd", [
    "if=/dev/urandom",
    `of=${join(src, "data", "blob")}`,
    "bs=1M",
    `count=${mib}`,
    "status=none",
  ]);
  return src;
}

/** Lines of `text` (mountinfo targets, loop back files…) naming something below `prefix`. */
const under = (text: string, prefix: string) => text.split("\n").filter((l) => l.includes(prefix));

it("two versions hydrating at once where one fits: one is local, the other RESOURCE_EXHAUSTED with nothing left, envs keep running", async () => {
  const [f0, f1] = [cl.nodes[0]!, cl.nodes[1]!];
  for (const name of ["pa", "pb"]) await importBaseFromDir(cl.c(), f0, name, await randomBase(name, 40));
  // an env already on the target, running through the fault
  const keep = testEnvSpec("pf-keep", { base: { name: "busybox", version: 0 }, node: f1 });
  expect((await call(cl.c(), "createEnv", { spec: keep, wait: true }, 120_000)).status?.phase).toBe(
    EnvPhase.ENV_PHASE_RUNNING,
  );

  const push = (name: string) =>
    streamed(
      cl.c().pushBase({
        ref: { name, version: 1 },
        nodes: [f1],
        all: false,
        selector: {},
        fanout: 0,
        transport: "",
        waitLocal: true,
      }),
    ).then(
      () => undefined,
      (e: unknown) => ProtoctlError.from(e),
    );
  const results = await Promise.all([push("pa"), push("pb")]);
  const failed = results.filter((r) => r !== undefined);
  expect(failed.length, JSON.stringify(results.map((r) => r?.message))).toBe(1);
  const err = failed[0]!;
  expect(err.code, err.message).toBe(Code.RESOURCE_EXHAUSTED);
  expect(err.message).toMatch(/pool is full/);
  const [won, lost] = results[0] === undefined ? ["pa", "pb"] : ["pb", "pa"];

  // the winner is local on f1; of the loser nothing is left there: no version, no attachment
  // (record, dir, sprout, loop device, mount, NBD client), no partial copy
  await eventually(
    async () => {
      const held = (await call(cl.c(), "getNode", { name: f1 })).baseVersions;
      return held.includes(`${won}@1`) && !held.includes(`${lost}@1`);
    },
    30_000,
    200,
  );
  const f1Dir = cl.agentDirs.get(f1)!;
  const att = join(f1Dir, "propagation", "attachments");
  expect((await readdir(att)).filter((n) => n.startsWith(`${lost}@`))).toEqual([]);
  expect(await readdir(join(att, `${won}@1`))).not.toContainEqual(expect.stringMatching(/\.part$/));
  expect(await readdir(join(f1Dir, "propagation", "sprouts"))).toEqual([`${won}@1.sprout.img`]);
  expect(under(await readFile("/proc/self/mountinfo", "utf8"), `${lost}@1`)).toEqual([]);
  expect(under((await run("losetup", ["-l", "-n", "-O", "BACK-FILE"])).stdout, `${lost}@1`)).toEqual([]);
  expect((await run("pgrep", ["-f", `${att}/${lost}@1`], { allowFailure: true })).stdout).toBe("");
  // the controller does not count f1 among the loser's holders either
  expect((await call(cl.c(), "getBase", { name: lost })).versions[0]?.nodes).toEqual([f0]);

  // envs lost = 0, duplicates = 0: the env that was there runs, once, and answers
  const on = await machinesOnHosts(cl.nodes);
  expect(on.get("pf-keep")).toEqual([f1]);
  expect((await call(cl.c(), "getEnv", { name: "pf-keep" })).status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
  expect((await execIn(cl.c(), "pf-keep", ["echo", "kept"])).stdout).toBe("kept\n");

  // f1 serves envs after: on the version it hydrated, and on another base
  for (const [name, base] of [
    ["pf-won", won],
    ["pf-bb", "busybox"],
  ] as const) {
    const spec = testEnvSpec(name, { base: { name: base, version: 0 }, node: f1 });
    const e = await call(cl.c(), "createEnv", { spec, wait: true }, 120_000);
    expect(e.status?.phase, e.status?.message).toBe(EnvPhase.ENV_PHASE_RUNNING);
    expect((await execIn(cl.c(), name, ["echo", "fine"])).stdout).toBe("fine\n");
  }
  expect([...(await machinesOnHosts(cl.nodes)).entries()].filter(([, n]) => n.length > 1)).toEqual([]);
  for (const name of ["pf-keep", "pf-won", "pf-bb"])
    await call(cl.c(), "deleteEnv", { name, wait: true }, 60_000);
  await eventually(async () => (await orphans(cl, new Map())).length === 0, 30_000, 200);
  // the winner goes, and with it the hydrated copy on f1: f1's disk is the next case's, and so
  // is the loser, still on f0 only (a fresh import would not fit f0's pool before btrfs has
  // freed what a deletion released)
  await call(cl.c(), "deleteBase", { ref: { name: won, version: 0 } });
  await eventually(async () => (await readdir(att)).length === 0, 60_000, 200);
  spare = lost;
}, 400_000);

it("the room going while a version hydrates: RESOURCE_EXHAUSTED, the copy and the attachment gone, envs keep running", async () => {
  const [f0, f1] = [cl.nodes[0]!, cl.nodes[1]!];
  const pc = spare ?? "pc";
  if (!spare) await importBaseFromDir(cl.c(), f0, pc, await randomBase(pc, 40));
  const keep = testEnvSpec("pf-keep2", { base: { name: "busybox", version: 0 }, node: f1 });
  expect((await call(cl.c(), "createEnv", { spec: keep, wait: true }, 120_000)).status?.phase).toBe(
    EnvPhase.ENV_PHASE_RUNNING,
  );
  const f1Dir = cl.agentDirs.get(f1)!;
  const filler = join(f1Dir, "filler");
  // the origin's egress slowed, so the copy is still landing when f1's disk fills up
  const h = cl.hosts.hosts[1]!;
  const tc = (op: "add" | "del", more: string[] = []) =>
    cl.hosts.exec(h, "tc", ["qdisc", op, "dev", h.ifname, "root", ...more], { allowFailure: op === "del" });
  await tc("add", ["tbf", "rate", "40mbit", "burst", "256kb", "latency", "400ms"]);
  try {
    let filled: Promise<unknown> | undefined;
    const err = await new Promise<ProtoctlError | undefined>((resolve) => {
      const s = cl.c().pushBase({
        ref: { name: pc, version: 1 },
        nodes: [f1],
        all: false,
        selector: {},
        fanout: 0,
        transport: "",
        waitLocal: true,
      });
      s.on("data", (p: PushProgress) => {
        if (filled || p.node !== f1 || p.phase !== AttachmentPhase.ATTACHMENT_PHASE_HYDRATING) return;
        // everything but 8 MiB taken by something else on the node's disk
        filled = freeBytes(f1Dir).then((free) =>
          run("fallocate", ["-l", String(Math.max(0, free - 8 * 2 ** 20)), filler]),
        );
      });
      s.on("end", () => resolve(undefined));
      s.on("error", (e) => resolve(ProtoctlError.from(e)));
    });
    await filled;
    expect(filled, "the push reported hydrating").toBeDefined();
    expect(err?.code, err?.message).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err?.message).toMatch(/pool is full/);
  } finally {
    await tc("del");
    await rm(filler, { force: true });
  }
  // nothing of the version is left on f1: no copy, no attachment (nothing reads it), no version
  await eventually(
    async () => !(await call(cl.c(), "getNode", { name: f1 })).baseVersions.includes(`${pc}@1`),
    30_000,
    200,
  );
  const att = join(f1Dir, "propagation", "attachments");
  expect((await readdir(att)).filter((n) => n.startsWith(`${pc}@`))).toEqual([]);
  expect(under(await readFile("/proc/self/mountinfo", "utf8"), `${pc}@1`)).toEqual([]);
  expect(under((await run("losetup", ["-l", "-n", "-O", "BACK-FILE"])).stdout, `${pc}@1`)).toEqual([]);
  expect((await call(cl.c(), "getBase", { name: pc })).versions[0]?.nodes).toEqual([f0]);

  // envs lost = 0, duplicates = 0; the node takes a new env after
  expect((await machinesOnHosts(cl.nodes)).get("pf-keep2")).toEqual([f1]);
  expect((await execIn(cl.c(), "pf-keep2", ["echo", "kept"])).stdout).toBe("kept\n");
  const spec = testEnvSpec("pf-after", { base: { name: "busybox", version: 0 }, node: f1 });
  expect((await call(cl.c(), "createEnv", { spec, wait: true }, 120_000)).status?.phase).toBe(
    EnvPhase.ENV_PHASE_RUNNING,
  );
  expect([...(await machinesOnHosts(cl.nodes)).entries()].filter(([, n]) => n.length > 1)).toEqual([]);
  for (const name of ["pf-keep2", "pf-after"]) await call(cl.c(), "deleteEnv", { name, wait: true }, 60_000);
  await eventually(async () => (await orphans(cl, new Map())).length === 0, 30_000, 200);
}, 400_000);
