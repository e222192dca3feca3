/**
 * Measures a plain env root's cost: prepareEnvRoot + removeEnvRoot against
 * the raw `btrfs subvolume snapshot` + `btrfs subvolume delete` on the same
 * base, 50 sequential runs each, p50 printed. Run:
 *   npx vitest run --project integration agent/host/pool/latency.int.test.ts
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "../../../common/exec.js";
import { silentLogger } from "../../../common/logger.js";
import { makeBusyboxRootfs } from "../../../test/fixtures/rootfs.js";
import { type BtrfsPool, openPool } from "./pool.js";

const RUNS = 50;
let stateDir: string;
let pool: BtrfsPool;

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-latency-"));
  pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 256 * 1024 * 1024 }, silentLogger());
  await pool.importBase("bb", { dir: await makeBusyboxRootfs(join(stateDir, "rootfs")) });
});

afterAll(async () => {
  await pool?.destroy();
  await rm(stateDir, { recursive: true, force: true });
});

it("plain env root: prepare+remove vs raw snapshot+delete", async () => {
  const base = join(pool.mountpoint, "@base/bb@1/root");
  const raw = { create: [] as number[], del: [] as number[] };
  const ours = { create: [] as number[], del: [] as number[] };
  for (let i = 0; i < RUNS; i++) {
    const dst = join(pool.mountpoint, "@workdir", `raw-${i}`);
    let t = performance.now();
    await run("btrfs", ["-q", "subvolume", "snapshot", base, dst]);
    raw.create.push(performance.now() - t);
    t = performance.now();
    await run("btrfs", ["-q", "subvolume", "delete", dst]);
    raw.del.push(performance.now() - t);

    t = performance.now();
    await pool.prepareEnvRoot(`lat-${i}`, "bb", 1, []);
    ours.create.push(performance.now() - t);
    t = performance.now();
    await pool.removeEnvRoot(`lat-${i}`);
    ours.del.push(performance.now() - t);
  }
  const line = (n: string, x: typeof raw) =>
    `${n}: create p50 ${p50(x.create).toFixed(1)} ms, delete p50 ${p50(x.del).toFixed(1)} ms, total p50 ${p50(
      x.create.map((c, i) => c + x.del[i]!),
    ).toFixed(1)} ms`;
  console.log(`${line("raw btrfs (execa)", raw)}\n${line("pool", ours)}`);
  expect(p50(ours.create)).toBeLessThan(20);
});
