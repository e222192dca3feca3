/**
 * `protoctl env exec NAME -- true` end to end, as a user runs it: the built
 * CLI against a real `protoctl up` cluster (mTLS; bench/support/up-cluster.ts),
 * one running env from a busybox base. Timed from just before spawn to exit,
 * median over N runs (default 30); two warm-up execs first (named in the
 * JSON, not counted). `node -e 0` is timed in the same loop for reference.
 * Target: p50 ≤ 120 ms.
 *
 * Usage: npm run bench -- cli-exec [--runs N]
 * Root (protoctl up, nspawn). Last stdout line:
 * {"bench":"cli-exec","exec_p50_ms":..,"target":120,"ok":..}
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { median, pct, round, timed, upCluster } from "../support/up-cluster.js";

const TARGET_MS = 120;
const WARMUP = 2;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const runsAt = argv.indexOf("--runs");
  const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : 30;
  const rootfs = await mkdtemp(join(tmpdir(), "protoctl-bench-rootfs-"));
  const cluster = await upCluster();
  const exec: number[] = [];
  const nodeBase: number[] = [];
  try {
    await makeBusyboxRootfs(rootfs);
    await cluster.must(["base", "import", "busybox", "--dir", rootfs]);
    await cluster.must(["env", "create", "bench-exec", "--base", "busybox"]);
    for (let i = 0; i < WARMUP; i++) await cluster.must(["env", "exec", "bench-exec", "--", "true"]);
    for (let i = 0; i < runs; i++) {
      exec.push((await cluster.must(["env", "exec", "bench-exec", "--", "true"])).ms);
      nodeBase.push((await timed(process.execPath, ["-e", "0"])).ms);
    }
    await cluster.must(["env", "rm", "bench-exec"]);
  } finally {
    await cluster.down();
    await rm(rootfs, { recursive: true, force: true });
  }
  const p50 = median(exec);
  const result = {
    bench: "cli-exec",
    runs,
    warmup: `${WARMUP} execs before the timed runs, not counted`,
    transport: "mTLS to the controller of a real `protoctl up`",
    cli: cluster.cliPath,
    exec_p50_ms: round(p50),
    exec_p90_ms: round(pct(exec, 90)),
    node_p50_ms: round(median(nodeBase)),
    target: TARGET_MS,
    ok: p50 <= TARGET_MS,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (!result.ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`cli-exec: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(2);
});
