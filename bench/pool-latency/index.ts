/**
 * A plain env root's cost: the pool's prepareEnvRoot + removeEnvRoot against
 * the raw `btrfs subvolume snapshot` + `btrfs subvolume delete` on the same
 * base, interleaved, N sequential rounds each (default 50), medians. Was an
 * integration test asserting an absolute 20 ms, which failed whenever the
 * machine was busy; a ratio against raw in the same run does not.
 *
 * Usage: npm run bench -- pool-latency [--runs N]
 * Last stdout line: {"bench":"pool-latency","pool_p50_ms":..,"raw_p50_ms":..,"ratio":..,"target":1.5,"ok":..}
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPool } from "../../agent/host/pool/pool.js";
import { run } from "../../common/exec.js";
import { silentLogger } from "../../common/logger.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";

const TARGET_RATIO = 1.5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round = (n: number) => Math.round(n * 100) / 100;

function argRuns(argv: string[]): number {
  const i = argv.indexOf("--runs");
  const n = i >= 0 ? Number(argv[i + 1]) : 50;
  if (!Number.isInteger(n) || n < 1) throw new Error("--runs takes a whole number ≥ 1");
  return n;
}

async function main(): Promise<void> {
  const runs = argRuns(process.argv.slice(2));
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-bench-pool-"));
  const pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 256 * 1024 * 1024 }, silentLogger());
  try {
    await pool.importBase("bb", { dir: await makeBusyboxRootfs(join(stateDir, "rootfs")) });
    const base = join(pool.mountpoint, "@base/bb@1/root");
    const raw: number[] = [];
    const ours: number[] = [];
    for (let i = 0; i < runs; i++) {
      const dst = join(pool.mountpoint, "@workdir", `raw-${i}`);
      let t = performance.now();
      await run("btrfs", ["-q", "subvolume", "snapshot", base, dst]);
      await run("btrfs", ["-q", "subvolume", "delete", dst]);
      raw.push(performance.now() - t);
      t = performance.now();
      await pool.prepareEnvRoot(`lat-${i}`, "bb", 1, []);
      await pool.removeEnvRoot(`lat-${i}`);
      ours.push(performance.now() - t);
    }
    const ratio = median(ours) / median(raw);
    const ok = ratio <= TARGET_RATIO;
    console.log(
      `raw snapshot+delete p50 ${median(raw).toFixed(1)} ms; pool prepare+remove p50 ${median(ours).toFixed(1)} ms`,
    );
    console.log(
      JSON.stringify({
        bench: "pool-latency",
        runs,
        pool_p50_ms: round(median(ours)),
        raw_p50_ms: round(median(raw)),
        ratio: round(ratio),
        target: TARGET_RATIO,
        method: "rounds interleaved (raw, then pool), no warm-up",
        ok,
      }),
    );
    process.exitCode = ok ? 0 : 1;
  } finally {
    await pool.destroy();
    await rm(stateDir, { recursive: true, force: true });
  }
}

await main();
