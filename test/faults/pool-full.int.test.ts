/**
 * A pool filling up, through the controller, on a real agent with a small
 * pool (192 MiB): a base import larger than the pool, and an env create whose
 * layer build fills it. Each fails with a clear RESOURCE_EXHAUSTED (the env:
 * FAILED saying the pool is full), leaves nothing half-made in the pool or on
 * the host, and the pool takes a new env afterwards. (Hydration into a full
 * pool is proven at the driver level: agent/host/attachments/seed-attachments
 * and hydrate integration tests.)
 */
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import { EnvPhase, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
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
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-poolfull-"));
  cl = await startFaultCluster({ agents: 1, poolSize: "192M" });
}, 240_000);

afterAll(async () => {
  await cl?.stop();
  await rm(dir, { recursive: true, force: true });
}, 120_000);

/** Entries of a pool area (below the agent's btrfs mount), `.tmp-*` included. */
async function area(name: string, sub = ""): Promise<string[]> {
  const stateDir = cl.agentDirs.get(cl.nodes[0]!)!;
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
