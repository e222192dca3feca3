/**
 * bench/schedule: placement throughput of the controller with etcd writes.
 *
 * Real etcd, one controller in its own process (so its RSS is its own), 100
 * fake agents over real gRPC in this process (joined with tokens and
 * heartbeating, answering instantly). A burst of env creates through the
 * API (wait=false, bounded concurrency, over the CLI's unary transport) until every env is Running in etcd,
 * observed with an etcd watch on env statuses.
 *
 * Over TLS as deployed: the controller serves mTLS (its CA on disk), the
 * creates carry the admin credential it wrote, every fake agent joins with a
 * token, gets a node certificate and serves mTLS that only the controller may
 * call. `--insecure` runs the old plaintext set-up for comparison.
 *
 * The fake agents serve on the lean HTTP/2 gRPC server (test/harness/
 * h2-unary-server.ts) in both modes, over mTLS with the controller-only check
 * here: grpc-js's server costs on their side (measured ~0.12 ms CPU per env of
 * this process with TLS, on the same 2 cores) are a tax the controller would
 * not pay with its agents on other machines. `--grpc-agents` serves them with grpc-js + controllerOnly()
 * as before sched2 (the JSON's "agents" says which).
 *
 * The controller runs as `protoctl up` and its systemd unit launch it, with
 * its heap flags on node's command line (common/controller-launch.ts; the
 * JSON's "controller_node_flags"). Before, it ran with node's defaults: the
 * run-time setting it made itself had no effect.
 *
 * Every env counts: placements/s is all `--envs` from the first create to
 * the last Running (no warm-up excluded). Reports API latency p50/p99 and
 * controller RSS once 1,000 envs are Running and at the end, and the work per
 * env as etcd and the agents count it (work-counts.ts). Final line:
 *   {"bench":"schedule",...,"target":2000,"ok":true|false}
 *
 * Usage: npm run bench -- schedule [--nodes 100] [--envs 10000] [--insecure] [--grpc-agents]
 *        [--concurrency 256 (reconcile workers)] [--clients 256 (API calls in flight)]
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { joinCluster } from "../../agent/membership/index.js";
import { CONTROLLER_NODE_FLAGS } from "../../common/controller-launch.js";
import { callUnary, GRPC_BASE_OPTIONS } from "../../common/grpc.js";
import { H2Unary } from "../../common/h2-unary.js";
import { silentLogger } from "../../common/logger.js";
import {
  type CredentialFile,
  clientCredentials,
  controllerOnly,
  readCredentialFile,
  serverCredentials,
} from "../../common/tls.js";
import { ClusterStore, codecs } from "../../controller/store/store.js";
import { ControlServiceClient, ControlServiceService } from "../../proto/gen/protoctl/v1/control.js";
import { EnvPhase, type EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { startEtcd } from "../../test/fixtures/etcd.js";
import { freePort } from "../../test/fixtures/ports.js";
import { type FakeAgent, sealFake, startFakeAgent } from "../../test/harness/fake-agent.js";
import { REUSABLE, testEnvSpec, uniquePrefix } from "../../test/support/controller/cluster.js";
import { spawnController } from "../../test/support/controller/process.js";
import { agentCalls, perEach, scrapeEtcd } from "./work-counts.js";

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "100" },
    envs: { type: "string", default: "10000" },
    insecure: { type: "boolean", default: false },
    "grpc-agents": { type: "boolean", default: false },
    concurrency: { type: "string", default: "256" },
    clients: { type: "string", default: "256" },
  },
  allowPositionals: true,
});
const NODES = Number(values.nodes);
const ENVS = Number(values.envs);
/** When the controller's RSS is sampled mid-run (not a warm-up: these envs count). */
const RSS_AT = Math.min(1000, ENVS);
const INSECURE = values.insecure === true;
const GRPC_AGENTS = values["grpc-agents"] === true;
const CONC = Number(values.concurrency);
const CLIENTS = Number(values.clients);
const TARGET = 2000;
/** The controller's node flags as deployed, then any the caller adds (a profiler; later flags win). */
const CONTROLLER_ARGS = [
  ...CONTROLLER_NODE_FLAGS,
  ...(process.env.PROTOCTL_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean),
];
const RUNNING = Buffer.from("ENV_PHASE_RUNNING");

function spec(name: string): EnvSpec {
  return testEnvSpec(name, {
    base: { name: "debian", version: 1 },
    resources: { memoryBytes: 64 * 2 ** 20, cpus: 0, pids: 0, diskBytes: 16 * 2 ** 20 },
  });
}

/** User + system CPU of a process so far, in ms (from /proc; clock ticks are 10 ms here). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const log = (m: string) => process.stderr.write(`bench schedule: ${m}\n`);

/** A fake agent serving mTLS with the node certificate its join got. */
async function startTlsAgent(ctlAddress: string, token: string, name: string): Promise<FakeAgent> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const tls = await joinCluster({ controller: ctlAddress, token, name, address, log: silentLogger() });
  if (!tls) throw new Error(`join of ${name} gave no TLS material`);
  const agent = await startFakeAgent({
    name,
    port,
    memoryBytes: 256 * 2 ** 30,
    poolSizeBytes: 1024 * 2 ** 30,
    ...(GRPC_AGENTS
      ? {
          credentials: serverCredentials(tls, { clientAuth: "require" }),
          interceptors: [controllerOnly(tls.caPem)],
        }
      : { lean: true, leanTls: { ...tls, allow: (peer) => peer?.role === "controller" } }),
  });
  await agent.join(ctlAddress, token, { credentials: { tls }, intervalMs: 3000 });
  return agent;
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const prefix = uniquePrefix();
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-bench-schedule-"));
  const ctl = await spawnController(
    {
      id: "bench-ctl",
      listen: "127.0.0.1:0",
      insecure: INSECURE,
      stateDir,
      tls: { caStore: "disk" },
      etcd: { endpoints: [etcd.endpoint], prefix },
      membership: { leaseTtlSeconds: 10, heartbeatIntervalMs: 3000 },
      reconcile: { concurrency: CONC, lostGraceSeconds: 60, electionTtlSeconds: 5 },
    },
    CONTROLLER_ARGS,
  );
  const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix });
  const agents: FakeAgent[] = [];
  const cred: CredentialFile | undefined = INSECURE
    ? undefined
    : await readCredentialFile(join(stateDir, "admin.json"));
  const client = new ControlServiceClient(
    ctl.address,
    clientCredentials(cred, cred ? { serverName: cred.serverName } : undefined),
    { ...GRPC_BASE_OPTIONS, "grpc.max_concurrent_streams": 1000 },
  );
  // the creates go the way the CLI sends them (common/h2-unary.ts), the rest through grpc-js
  const api = new H2Unary({
    address: ctl.address,
    insecure: INSECURE,
    ...(cred
      ? {
          ca: Buffer.from(cred.caPem),
          cert: Buffer.from(cred.certPem),
          key: Buffer.from(cred.keyPem),
          serverName: cred.serverName,
        }
      : {}),
    userAgent: "protoctl-bench",
  });
  try {
    const { token } = await callUnary(client.createJoinToken.bind(client), {
      ttlSeconds: 600,
      labels: {},
      ...REUSABLE,
    });
    await sealFake(
      store,
      "debian@1",
      "node-0",
      Array.from({ length: NODES - 1 }, (_, i) => `node-${i + 1}`),
    );
    if (INSECURE) {
      for (let i = 0; i < NODES; i++) {
        agents.push(
          await startFakeAgent({
            name: `node-${i}`,
            memoryBytes: 256 * 2 ** 30,
            poolSizeBytes: 1024 * 2 ** 30,
            lean: !GRPC_AGENTS,
          }),
        );
      }
      await Promise.all(agents.map((a) => a.join(ctl.address, token, { intervalMs: 3000 })));
    } else {
      for (let i = 0; i < NODES; i += 10) {
        const batch = Array.from({ length: Math.min(10, NODES - i) }, (_, j) => `node-${i + j}`);
        agents.push(...(await Promise.all(batch.map((n) => startTlsAgent(ctl.address, token, n)))));
      }
    }
    log(`${NODES} agents joined`);
    for (;;) {
      const nodes = (await callUnary(client.listNodes.bind(client), {})).nodes;
      if (nodes.filter((n) => n.state === 1 && n.baseVersions.length > 0).length === NODES) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    // watch statuses to learn when each env is Running
    const running = new Set<string>();
    let onRunning: (() => void) | undefined;
    const cancel = await store.envStatus.watch(undefined, (events) => {
      for (const e of events) {
        if (e.type !== "put" || !e.value || !e.value.includes(RUNNING)) continue;
        const st = codecs.envStatus.decode(e.value);
        if (st.phase === EnvPhase.ENV_PHASE_RUNNING) running.add(store.envStatus.nameOf(e.key)!);
      }
      onRunning?.();
    });
    const waitRunning = (n: number) =>
      new Promise<void>((resolve) => {
        onRunning = () => {
          if (running.size >= n) resolve();
        };
        onRunning();
      });

    const latencies: number[] = [];
    const burst = async (from: number, to: number) => {
      let next = from;
      const worker = async () => {
        while (next < to) {
          const i = next++;
          const t0 = performance.now();
          await api.unary(
            ControlServiceService.createEnv,
            { spec: spec(`env-${i}`), wait: false },
            { deadlineMs: 60_000 },
          );
          latencies.push(performance.now() - t0);
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, worker));
    };

    // one burst of every env, all counted; the controller's RSS is sampled (in passing) at RSS_AT Running
    let rssMid = 0;
    const midSample = waitRunning(RSS_AT).then(async () => {
      rssMid = await ctl.rssBytes();
      log(`${RSS_AT} envs Running; controller RSS ${(rssMid / 2 ** 20).toFixed(1)} MiB`);
    });
    const etcd0 = await scrapeEtcd(etcd.endpoint);
    const calls0 = agentCalls(agents);
    const cpu0 = { ctl: cpuMs(ctl.pid), etcd: cpuMs(etcd.process.pid!), bench: cpuMs(process.pid) };
    const t1 = performance.now();
    const ticker = process.env.PROTOCTL_BENCH_VERBOSE
      ? setInterval(
          () =>
            log(
              `t+${Math.round(performance.now() - t1)} ms: ${running.size} Running, ${latencies.length} created`,
            ),
          500,
        )
      : undefined;
    await burst(0, ENVS);
    const tApi = performance.now();
    await midSample;
    await waitRunning(ENVS);
    const t2 = performance.now();
    if (ticker) clearInterval(ticker);
    const rssEnd = await ctl.rssBytes();
    const cpu = {
      ctl: (cpuMs(ctl.pid) - cpu0.ctl) / ENVS,
      etcd: (cpuMs(etcd.process.pid!) - cpu0.etcd) / ENVS,
      bench: (cpuMs(process.pid) - cpu0.bench) / ENVS,
    };
    const etcdPerEnv = perEach(etcd0, await scrapeEtcd(etcd.endpoint), ENVS);
    const callsPerEnv = perEach(calls0, agentCalls(agents), ENVS);
    await cancel();

    const rate = ENVS / ((t2 - t1) / 1000);
    latencies.sort((a, b) => a - b);
    const placedOn = agents.filter((a) => a.envs.size > 0).length;
    const perNode = agents.map((a) => a.envs.size);
    const result = {
      bench: "schedule",
      nodes: NODES,
      envs: ENVS,
      transport: INSECURE ? "plaintext (--insecure)" : "mTLS: admin client, controller, agents",
      agents: GRPC_AGENTS
        ? "grpc-js server (--grpc-agents)"
        : `lean HTTP/2 gRPC server (test/harness/h2-unary-server.ts)${INSECURE ? "" : ", mTLS, controller-only"}`,
      counted: "every env, first create to last Running (no warm-up)",
      controller_node_flags: CONTROLLER_ARGS.join(" "),
      placements_per_s: Math.round(rate),
      api_creates_per_s: Math.round(ENVS / ((tApi - t1) / 1000)),
      api_p50_ms: Number(pct(latencies, 50).toFixed(2)),
      api_p99_ms: Number(pct(latencies, 99).toFixed(2)),
      controller_rss_mb_mid: Number((rssMid / 2 ** 20).toFixed(1)),
      rss_mid_at_envs_running: RSS_AT,
      controller_rss_mb_at_end: Number((rssEnd / 2 ** 20).toFixed(1)),
      // CPU per placement, less sensitive to other load on the machine than the rate
      cpu_ms_per_env_controller: Number(cpu.ctl.toFixed(3)),
      cpu_ms_per_env_etcd: Number(cpu.etcd.toFixed(3)),
      cpu_ms_per_env_bench_agents_and_client: Number(cpu.bench.toFixed(3)),
      // counted by etcd and the fake agents, so any controller build is counted the same way; the
      // window includes the agents' heartbeats and this bench's own status watch (one event per put)
      per_env_etcd: etcdPerEnv,
      per_env_agent_calls: callsPerEnv,
      load_average_1m: Number(loadavg()[0]!.toFixed(2)),
      nodes_used: placedOn,
      envs_per_node_min: Math.min(...perNode),
      envs_per_node_max: Math.max(...perNode),
      target: TARGET,
      ok: rate >= TARGET && running.size === ENVS,
    };
    log(
      `${ENVS} envs Running in ${Math.round(t2 - t1)} ms (${result.placements_per_s}/s); API p99 ${result.api_p99_ms} ms`,
    );
    console.log(JSON.stringify(result));
    if (!result.ok) process.exitCode = 1;
  } finally {
    client.close();
    api.close();
    await Promise.all(agents.map((a) => a.stop()));
    await ctl.stop();
    await store.purge().catch(() => undefined);
    await store.close();
    await etcd.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
