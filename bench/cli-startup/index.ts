/**
 * CLI start-up as a user waits for it: `protoctl version` (the CLI starts,
 * reads its context, opens an mTLS connection to the controller, one unary
 * call, prints, exits), end to end, against a real cluster from the built
 * CLI's own `protoctl up` (bench/support/up-cluster.ts: its own state dir,
 * free ports, config dir). Timed from just before spawn to exit; median over
 * N runs (default 30). One warm-up run of each command first (page cache),
 * named in the JSON, not counted.
 *
 * Beside it: `node -e 0` (node's own floor on this machine), `version
 * --client` (no network: start-up alone) and `env ls` (another unary
 * command), all in the same interleaved loop. Target: version p50 ≤ 100 ms.
 *
 * Usage: npm run bench -- cli-startup [--runs N]
 * Root (protoctl up). Last stdout line:
 * {"bench":"cli-startup","version_p50_ms":..,"node_p50_ms":..,"target":100,"ok":..}
 */
import { median, pct, round, timed, upCluster } from "../support/up-cluster.js";

const TARGET_MS = 100;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const runsAt = argv.indexOf("--runs");
  const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : 30;
  const cluster = await upCluster();
  const version: number[] = [];
  const client: number[] = [];
  const envLs: number[] = [];
  const nodeBase: number[] = [];
  try {
    process.stderr.write(`cli-startup: protoctl up took ${round(cluster.upMs)} ms\n`);
    // warm-up: one of each, not counted
    await cluster.must(["version"]);
    await cluster.must(["version", "--client"]);
    await cluster.must(["env", "ls"]);
    await timed(process.execPath, ["-e", "0"]);
    for (let i = 0; i < runs; i++) {
      const v = await cluster.must(["version"]);
      if (!/^server: /m.test(v.stdout)) throw new Error(`version did not reach the controller: ${v.stdout}`);
      version.push(v.ms);
      client.push((await cluster.must(["version", "--client"])).ms);
      envLs.push((await cluster.must(["env", "ls"])).ms);
      nodeBase.push((await timed(process.execPath, ["-e", "0"])).ms);
    }
  } finally {
    await cluster.down();
  }
  const p50 = median(version);
  const result = {
    bench: "cli-startup",
    runs,
    warmup: "one run of each command before the timed runs, not counted",
    transport: "mTLS to the controller of a real `protoctl up`",
    cli: cluster.cliPath,
    version_p50_ms: round(p50),
    version_p90_ms: round(pct(version, 90)),
    client_only_p50_ms: round(median(client)),
    env_ls_p50_ms: round(median(envLs)),
    node_p50_ms: round(median(nodeBase)),
    over_node_ms: round(p50 - median(nodeBase)),
    target: TARGET_MS,
    ok: p50 <= TARGET_MS,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (!result.ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`cli-startup: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(2);
});
