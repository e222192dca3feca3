/**
 * The cycle a user types, through each tool's own CLI, interleaved in one run
 * on the same busybox rootfs on btrfs:
 *  - protoctl: `env create NAME --base busybox` + `env exec NAME -- /bin/true`
 *    + `env rm NAME`, the built CLI against a real `protoctl up` cluster (mTLS,
 *    its own state dir and free ports: bench/support/up-cluster.ts);
 *  - LXC: `lxc-copy -s -B btrfs`, `lxc-start`, `lxc-attach -- /bin/true`,
 *    `lxc-stop -k`, `lxc-destroy` (lxc.ts; root, privileged containers).
 * The first `env create` after `up` (and its base import) is timed on its own
 * (`first_create_ms`) and not in the rounds; it must be within 1.5× of the
 * later creates' median. One LXC warm-up cycle (page cache) is not counted.
 * Target: protoctl cycle p50 ≤ 3 × LXC cycle p50.
 *
 * Needs lxc (.ci/install-system.sh installs it; the bench says so otherwise).
 * Usage: npm run bench -- cli-cycle [--rounds N]
 * Last stdout line: {"bench":"cli-cycle","ratio":..,"target":3,"first_create_ratio":..,"ok":..}
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { median, round, type UpCluster, upCluster } from "../support/up-cluster.js";
import { cleanupLxc, type LxcSetup, lxcCycle, setupLxc } from "./lxc.js";

const TARGET_RATIO = 3;
const TARGET_FIRST_RATIO = 1.5;

async function protoctlCycle(c: UpCluster, name: string): Promise<Record<string, number>> {
  const create = await c.must(["env", "create", name, "--base", "busybox"]);
  const exec = await c.must(["env", "exec", name, "--", "/bin/true"]);
  const remove = await c.must(["env", "rm", name]);
  return { create: create.ms, exec: exec.ms, rm: remove.ms };
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

function medians(rows: Array<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(rows[0] ?? {})) out[k] = round(median(rows.map((r) => r[k]!)));
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const at = argv.indexOf("--rounds");
  const rounds = at >= 0 ? Number(argv[at + 1]) : 10;
  if (!existsSync("/usr/bin/lxc-copy")) {
    throw new Error("lxc is not installed: run .ci/install-system.sh (or apt-get install lxc)");
  }
  const work = await mkdtemp(join(tmpdir(), "protoctl-bench-cycle-"));
  let cluster: UpCluster | undefined;
  let lxc: LxcSetup | undefined;
  const lxcNames: string[] = [];
  const ours: Array<Record<string, number>> = [];
  const theirs: Array<Record<string, number>> = [];
  let first: Record<string, number> = {};
  let importMs = 0;
  try {
    const rootfs = await makeBusyboxRootfs(join(work, "rootfs"));
    lxc = await setupLxc(work);
    cluster = await upCluster();
    process.stderr.write(`cli-cycle: protoctl up took ${round(cluster.upMs)} ms\n`);
    importMs = (await cluster.must(["base", "import", "busybox", "--dir", rootfs])).ms;
    // the first create after up, on its own
    first = await protoctlCycle(cluster, "cycle-first");
    lxcNames.push("warm");
    await lxcCycle(lxc, "warm");
    for (let i = 0; i < rounds; i++) {
      ours.push(await protoctlCycle(cluster, `cycle-${i}`));
      lxcNames.push(`c${i}`);
      theirs.push(await lxcCycle(lxc, `c${i}`));
    }
  } finally {
    await cluster?.down();
    await cleanupLxc(lxc, lxcNames);
    await rm(work, { recursive: true, force: true });
  }
  const cycle = median(ours.map(sum));
  const lxcCycleMs = median(theirs.map(sum));
  const laterCreate = median(ours.map((r) => r.create!));
  const ratio = cycle / lxcCycleMs;
  const firstRatio = first.create! / laterCreate;
  const result = {
    bench: "cli-cycle",
    rounds,
    rootfs: "busybox (test/fixtures/rootfs.ts) on btrfs, the same for both",
    warmup:
      "one LXC cycle before the rounds, not counted; protoctl's first cycle after up is reported as first_*",
    transport: "mTLS to the controller of a real `protoctl up`",
    cycle_p50_ms: round(cycle),
    lxc_cycle_p50_ms: round(lxcCycleMs),
    ratio: Math.round(ratio * 100) / 100,
    target: TARGET_RATIO,
    steps_p50_ms: medians(ours),
    lxc_steps_p50_ms: medians(theirs),
    base_import_ms: round(importMs),
    first_create_ms: round(first.create!),
    first_exec_ms: round(first.exec!),
    first_rm_ms: round(first.rm!),
    later_create_p50_ms: round(laterCreate),
    first_create_ratio: Math.round(firstRatio * 100) / 100,
    first_create_target: TARGET_FIRST_RATIO,
    ok: ratio <= TARGET_RATIO && firstRatio <= TARGET_FIRST_RATIO,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (!result.ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`cli-cycle: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(2);
});
