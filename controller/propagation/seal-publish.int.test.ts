/**
 * Publish at seal (issue 20 item 5): the origin begins a version's seed image
 * the moment the version is made, so a push right after does not publish on
 * its critical path; the push's record says how it got the seed and how long
 * it waited. The seal's checksum rules hold (bound by the origin's first
 * PublishSeed, verified by every target), and a version deleted mid-publish
 * leaves nothing behind. Real controller + two agents in network namespaces:
 * a1 makes the versions, a2 is the push target.
 */
import { mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { output, run } from "../../common/exec.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { call, eventually } from "../../test/support/controller/cluster.js";
import {
  type PropagationCluster,
  startPropagationCluster,
} from "../../test/support/controller/propagation-cluster.js";

const MiB = 1024 * 1024;
let cl: PropagationCluster;
let rootfs: string;
let seeds: string;

interface PushRecord {
  spec: { kind: string; push?: { base: string; version: number } };
  status: { phase: string; seed?: { node: string; how: string; waitMs: number } };
}

async function pushRecord(version: number): Promise<PushRecord | undefined> {
  const all = (await cl.etcd("operations/")) as unknown as PushRecord[];
  return all.find(
    (r) => r.spec.kind === "push" && r.spec.push?.base === "demo" && r.spec.push.version === version,
  );
}

async function newVersion(motd: string): Promise<number> {
  await writeFile(join(rootfs, "etc/motd"), `${motd}\n`);
  await cl.importBase("a1", "demo", rootfs);
  return (await call(cl.c, "getBase", { name: "demo" })).latest;
}

/** What a1's seeds directory holds for demo@N: records, images, temporary images, mounts. */
async function seedFiles(version: number): Promise<string[]> {
  return (await readdir(seeds)).filter((f) => f.includes(`demo@${version}.`) || f.startsWith(".seed-mnt-"));
}

beforeAll(async () => {
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-sealpub-rootfs-"));
  await makeBusyboxRootfs(rootfs);
  await run("mkdir", ["-p", join(rootfs, "data")]);
  await writeFile(join(rootfs, "data/big"), Buffer.alloc(24 * MiB, 7));
  cl = await startPropagationCluster({ agents: 2 });
  seeds = join(cl.agents[0]!.stateDir, "propagation/seeds");
}, 180_000);

afterAll(async () => {
  await cl?.cleanup();
  await rm(rootfs, { recursive: true, force: true });
}, 120_000);

it("a push while the seal's publish runs joins it, and its record says how long it waited", async () => {
  const v = await newVersion("version 1");
  // the publish at seal begins once the node is quiet (no env create for a moment): under way now
  await eventually(
    async () => (await seedFiles(v)).some((f) => f.endsWith(".tmp") || f === `demo@${v}.json`),
    30_000,
    20,
  );
  const lines: PushProgress[] = [];
  await cl.push({ ref: { name: "demo", version: v }, nodes: ["a2"], waitLocal: true }, (p) => lines.push(p));
  const rec = await pushRecord(v);
  expect(rec?.status.phase).toBe("succeeded");
  expect(rec?.status.seed).toMatchObject({ node: "a1", how: "at-seal" });
  expect(rec?.status.seed?.waitMs).toBeGreaterThanOrEqual(0);
  expect(lines.some((p) => !p.node && /published at seal on a1; waited \d+ ms/.test(p.message))).toBe(true);
  // the push's PublishSeed bound the seal's checksum to the image begun at seal (which the
  // controller has collected since: every node holds demo@1; the record stays)
  const seed = (await cl.etcd(`seeds/demo@${v}`)).at(0);
  expect(seed?.publishedAtSeal).toBe(true);
  const seal = (await cl.etcd("base-versions/demo/")).find((x) => x.version === v);
  expect(seal?.checksum).toMatch(/^blake3-4m:[0-9a-f]{64}$/);
  expect(seal?.checksum).toBe(seed?.checksum);
  expect(seal?.holders).toEqual(["a2"]);

  // Nothing pushes the next version: its image is made all the same, then a push finds it ready.
  const v2 = await newVersion("version 2");
  await eventually(async () => (await seedFiles(v2)).includes(`demo@${v2}.json`), 60_000, 100);
  await cl.push({ ref: { name: "demo", version: v2 }, nodes: ["a2"], waitLocal: true });
  expect((await pushRecord(v2))?.status.seed).toMatchObject({ node: "a1", how: "at-seal" });
  await cl.createEnv("sp2", "demo", v2, "a2");
  const r2 = await cl.exec("sp2", ["cat", "/etc/motd"]);
  expect(r2.stdout).toBe("version 2\n");
  await call(cl.c, "deleteEnv", { name: "sp2", wait: true }, 60_000);
}, 180_000);

it("a push refuses an image published at seal whose bytes changed before the push", async () => {
  const v = await newVersion("version 3");
  await eventually(async () => (await seedFiles(v)).includes(`demo@${v}.json`), 60_000, 100);
  // The image was checksummed when it was made; its bytes change on disk afterwards.
  const fh = await open(join(seeds, `demo@${v}.img`), "r+");
  try {
    const size = (await fh.stat()).size;
    for (let off = Math.floor(size / 2); off < size; off += 4 * MiB) {
      await fh.write(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, off);
    }
  } finally {
    await fh.close();
  }
  const err = await cl
    .push({ ref: { name: "demo", version: v }, nodes: ["a2"], waitLocal: true })
    .catch((e) => e);
  expect(err.code).toBe(Code.DATA_LOSS);
  expect(err.message).toMatch(/does not match its checksum/);
  expect((await cl.etcd(`attachments/demo@${v}/a2`)).at(0)?.phase).toBe("ATTACHMENT_PHASE_FAILED");
  expect((await cl.etcd("base-versions/demo/")).find((x) => x.version === v)?.holders ?? []).toEqual([]);
}, 180_000);

it("a version deleted while its seal publish runs leaves no image, record, mount or loop device", async () => {
  // large enough that the publish is still copying when the delete arrives
  await writeFile(join(rootfs, "data/big"), Buffer.alloc(256 * MiB, 9));
  const v = await newVersion("version 4");
  await writeFile(join(rootfs, "data/big"), Buffer.alloc(24 * MiB, 7));
  // the publish is under way: its temporary image exists
  await eventually(async () => (await seedFiles(v)).some((f) => f.endsWith(".tmp")), 30_000, 20);
  expect((await seedFiles(v)).includes(`demo@${v}.json`)).toBe(false);
  await call(cl.c, "deleteBase", { ref: { name: "demo", version: v } }, 60_000);
  expect((await call(cl.c, "getBase", { name: "demo" })).versions.map((x) => x.version)).not.toContain(v);
  expect(await seedFiles(v)).toEqual([]);
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  expect(mounts.split("\n").filter((l) => l.includes(seeds))).toEqual([]);
  const loops = await output("losetup", ["-l", "-n", "-O", "BACK-FILE"]);
  expect(loops.split("\n").filter((l) => l.includes(seeds))).toEqual([]);
}, 180_000);
