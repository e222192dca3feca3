/**
 * The controller trusts only base versions it sealed (issue 15 item 6), and
 * a version is usable the moment the command that made it returns (issue 17
 * item 2). Real controller (TLS) + three real agents in network namespaces:
 * a1 makes the versions, a2 plays a compromised node (versions written
 * straight into its pool, a seed record that lies), a3 is a push target.
 */
import { copyFile, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { checksumFile } from "../../agent/host/exports/checksum.js";
import { Code } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase, type OperationEvent, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { call, eventually, streamed } from "../../test/support/controller/cluster.js";
import {
  type PropagationCluster,
  startPropagationCluster,
} from "../../test/support/controller/propagation-cluster.js";

const MiB = 1024 * 1024;
let cl: PropagationCluster;
let rootfs: string;
let scratch: string;

const phase = (p: PushProgress) =>
  (AttachmentPhase[p.phase] ?? "").replace("ATTACHMENT_PHASE_", "").toLowerCase();

/** What a compromised node can do: a "base version" made in its own pool, never sealed. */
async function forgeVersion(agent: string, base: string, version: number): Promise<void> {
  const a = cl.agents.find((x) => x.name === agent)!;
  const dir = join(a.stateDir, "pool/mnt/@base", `${base}@${version}`);
  await run("mkdir", ["-p", dir]);
  await run("btrfs", ["-q", "subvolume", "create", join(dir, "root")]);
  await writeFile(join(dir, "root/evil"), "forged\n");
  const meta = { base, version, source: "forged", createdMs: Date.now(), recipeDigest: "", sizeBytes: 4096 };
  await writeFile(join(dir, "meta.json"), JSON.stringify(meta));
}

/** Flips bytes every 4 MiB over the second half of an image (the same bytes each time). */
async function corrupt(image: string): Promise<void> {
  const fh = await open(image, "r+");
  try {
    const size = (await fh.stat()).size;
    for (let off = Math.floor(size / 2); off < size; off += 4 * MiB) {
      await fh.write(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, off);
    }
  } finally {
    await fh.close();
  }
}

async function limitEgress(host: number, rate: string | undefined): Promise<void> {
  const h = cl.hosts.hosts[host]!;
  await cl.hosts.exec(h, "tc", ["qdisc", "del", "dev", h.ifname, "root"], { allowFailure: true });
  if (rate) {
    const tbf = ["rate", rate, "burst", "256kb", "latency", "400ms"];
    await cl.hosts.exec(h, "tc", ["qdisc", "add", "dev", h.ifname, "root", "tbf", ...tbf]);
  }
}

const seal = async (v: number) =>
  (await cl.etcd("base-versions/demo/")).find((x) => x.version === v) as
    | { origin?: string; checksum?: string; holders?: string[]; sealedMs?: string }
    | undefined;

beforeAll(async () => {
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-seal-rootfs-"));
  scratch = await mkdtemp(join(tmpdir(), "protoctl-seal-scratch-"));
  await makeBusyboxRootfs(rootfs);
  await run("mkdir", ["-p", join(rootfs, "data")]);
  await writeFile(join(rootfs, "data/big"), Buffer.alloc(24 * MiB, 7));
  cl = await startPropagationCluster({ agents: 3 });
}, 180_000);

afterAll(async () => {
  await limitEgress(1, undefined).catch(() => undefined);
  await cl?.cleanup();
  await rm(rootfs, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
}, 120_000);

it("build then layer add in one go: the version and its holder are on record when the import returns", async () => {
  const evs = await cl.importBase("a1", "demo", rootfs);
  const result = evs.find((e) => e.event?.$case === "result")?.event;
  const bv = result?.$case === "result" && result.result.result?.$case === "baseVersion";
  expect(
    bv && result.result.result?.$case === "baseVersion" && result.result.result.baseVersion,
  ).toMatchObject({
    base: "demo",
    version: 1,
    origin: "a1",
  });
  // no wait: the very next calls see demo@1 held by a1, in the node's inventory too (the
  // scheduler places from it: an env created now need not wait for a1's next heartbeat)
  const node = await call(cl.c, "getNode", { name: "a1" });
  expect(node.baseVersions).toContain("demo@1");
  const [base, layer] = await Promise.all([
    call(cl.c, "getBase", { name: "demo" }),
    streamed(
      cl.c.addLayer({
        layer: {
          name: "stamp",
          recipe: {
            kind: RecipeKind.RECIPE_KIND_SHELL,
            main: Buffer.from("echo hi > /etc/stamp\n"),
            files: [],
          },
          parents: [],
        },
        buildOn: [{ name: "demo", version: 0 }],
      }),
    ),
  ]);
  expect(base.latest).toBe(1);
  expect(base.versions[0]?.nodes).toEqual(["a1"]);
  const built = layer.filter((e: OperationEvent) => e.event?.$case === "result");
  expect(built).toHaveLength(1);
  expect(built[0]?.event?.$case === "result" && built[0].event.result.result).toMatchObject({
    $case: "layerBuild",
    layerBuild: { base: "demo@1", node: "a1" },
  });
  const l = await call(cl.c, "getLayer", { name: "stamp" });
  expect(l.builds.map((b) => [b.base, b.node])).toEqual([["demo@1", "a1"]]);
  expect(typeof l.builds[0]!.sizeBytes).toBe("number");
  expect(l.builds[0]!.builtMs).toBeGreaterThan(0);
  const s = await seal(1);
  expect(s?.origin).toBe("a1");
  expect(Number(s?.sealedMs)).toBeGreaterThan(0);
}, 120_000);

it("a compromised node's versions are foreign: never latest, never a push source", async () => {
  // a2 claims demo@7 (never sealed) and its own demo@1 (not the sealed one)
  await forgeVersion("a2", "demo", 7);
  await forgeVersion("a2", "demo", 1);
  const a2 = await eventually(
    async () => {
      const n = await call(cl.c, "getNode", { name: "a2" });
      return n.foreignBaseVersions.length === 2 ? n : undefined;
    },
    30_000,
    200,
  );
  expect(a2.foreignBaseVersions.sort()).toEqual(["demo@1", "demo@7"]);
  expect(a2.baseVersions).toEqual([]);
  const base = await call(cl.c, "getBase", { name: "demo" });
  expect(base.latest).toBe(1);
  expect(base.versions.map((v) => [v.version, v.foreign, v.nodes, v.foreignNodes])).toEqual([
    [1, false, ["a1"], ["a2"]],
    [7, true, [], ["a2"]],
  ]);
  expect((await call(cl.c, "listBases", {})).bases.find((b) => b.name === "demo")?.latest).toBe(1);
  // an unsealed version is not pushed from anywhere
  const refused = await cl.push({ ref: { name: "demo", version: 7 }, nodes: ["a3"] }).catch((e) => e);
  expect(refused).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "NOT_SEALED" });
  // "latest" is @1, and it comes from a1 (a2's copy never serves)
  const evs = await cl.push({ ref: { name: "demo", version: 0 }, nodes: ["a3"], waitLocal: true });
  const sources = new Set(evs.filter((p) => p.sourceNode).map((p) => p.sourceNode));
  expect([...sources]).toEqual(["a1"]);
  expect(evs.some((p) => p.node === "a3" && phase(p) === "local")).toBe(true);
  // the origin's first publish bound the seal's checksum; the verified target is a recorded holder
  const s = await seal(1);
  const seed = (await cl.etcd("seeds/demo@1")).at(0);
  expect(s?.checksum).toMatch(/^(blake3-4m|sha256):[0-9a-f]{64}$/);
  expect(seed?.checksum).toBe(s?.checksum);
  expect(s?.holders).toEqual(["a3"]);
  await eventually(
    async () => (await call(cl.c, "getBase", { name: "demo" })).versions[0]?.nodes.sort().join() === "a1,a3",
  );
}, 120_000);

it("a push verifies the checksum the controller sealed, not the one a source claims", async () => {
  await writeFile(join(rootfs, "etc/motd"), "version 2\n");
  await cl.importBase("a1", "demo", rootfs);
  // bind the seal's checksum: a first push to a3
  await cl.push({ ref: { name: "demo", version: 2 }, nodes: ["a3"], waitLocal: true });
  const sealed = (await seal(2))?.checksum;
  expect(sealed).toBeTruthy();
  // a3 goes away, so the origin's image is the only source left for a2
  const a3 = cl.agents.find((a) => a.name === "a3")!;
  await cl.kill(a3.proc, "SIGKILL");
  await eventually(async () => (await call(cl.c, "getNode", { name: "a3" })).state !== 1, 30_000, 200);
  // The origin turns bad: it will serve other bytes, and its seed record claims their checksum.
  const image = join(cl.agents[0]!.stateDir, "propagation/seeds/demo@2.img");
  const copy = join(scratch, "demo@2.img");
  await copyFile(image, copy);
  await corrupt(copy);
  const claimed = (await checksumFile(copy)).checksum;
  expect(claimed).not.toBe(sealed);
  const rec = (await cl.etcd("seeds/demo@2")).at(0)!;
  await cl.etcdPut("seeds/demo@2", { ...rec, checksum: claimed });
  await limitEgress(1, "100mbit");
  let corrupted = false;
  const err = await cl
    .push({ ref: { name: "demo", version: 2 }, nodes: ["a2"], waitLocal: true }, (p) => {
      if (p.node === "a2" && phase(p) === "attached" && !corrupted) {
        corrupted = true;
        void corrupt(image);
      }
    })
    .catch((e) => e);
  await limitEgress(1, undefined);
  expect(corrupted).toBe(true);
  // verified against the seal: the claimed checksum (which the bytes match) is not the one checked
  expect(err.code).toBe(Code.DATA_LOSS);
  expect(err.message).toMatch(/does not match its checksum/);
  expect((await seal(2))?.checksum).toBe(sealed);
  expect((await seal(2))?.holders).toEqual(["a3"]);
  // a2 is not a holder: its copy failed (what it reads lazily stays attached, as any attach)
  expect((await cl.etcd("attachments/demo@2/a2")).at(0)?.phase).toBe("ATTACHMENT_PHASE_FAILED");
}, 180_000);
