/**
 * CLI start-up: process start → first RPC, median over N runs (default 30).
 *
 * A tiny in-process ControlService answers ListNodes and records when each
 * request arrives; each run spawns the built CLI (`node dist/cli/main.js node
 * ls`) against it, with an empty config dir and PROTOCTL_CONTROLLER set. Two
 * numbers per run:
 *  - arrival: from just before spawn() to the request reaching the server
 *    (includes fork/exec, node boot, TCP + HTTP/2 set-up: what a user waits);
 *  - traced: the CLI's own `performance.now()` when it hands the first RPC
 *    to the transport (PROTOCTL_TRACE_STARTUP=1), i.e. "process start → RPC sent".
 * The baseline is `node -e 0` (spawn → exit). Target: p50 of arrival < 150 ms.
 *
 * Usage: npm run bench -- cli-startup [--runs N]
 * Last stdout line: {"bench":"cli-startup","p50_ms":..,"node_p50_ms":..,"target":150,"ok":..}
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import { ControlServiceService } from "../../proto/gen/protoctl/v1/control.js";

const TARGET_MS = 150;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** The repository root: dist-bench/bench/cli-startup/index.js → three levels up. */
function repoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
}

async function startServer(onArrival: () => void): Promise<{ server: Server; port: number }> {
  const { Server } = await import("@grpc/grpc-js");
  const server = new Server();
  const notImplemented = (_call: unknown, cb: (err: { code: number; details: string }) => void) =>
    cb({ code: 12, details: "not in this bench" });
  const impl: Record<string, unknown> = {};
  for (const key of Object.keys(ControlServiceService)) impl[key] = notImplemented;
  impl.listNodes = (_call: unknown, cb: (err: null, res: { nodes: [] }) => void) => {
    onArrival();
    cb(null, { nodes: [] });
  };
  server.addService(ControlServiceService, impl as never);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? rej(err) : res(p),
    ),
  );
  return { server, port };
}

function runOnce(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ startedAt: number; endedAt: number; stderr: string; code: number | null }> {
  return new Promise((res, rej) => {
    const startedAt = performance.now();
    const child = spawn(cmd, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    child.on("error", rej);
    child.on("close", (code) => res({ startedAt, endedAt: performance.now(), stderr, code }));
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const runsAt = argv.indexOf("--runs");
  const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : 30;
  const root = repoRoot();
  const cli = join(root, "dist/cli/main.js");
  const cfgDir = await mkdtemp(join(tmpdir(), "protoctl-bench-cfg-"));
  let arrivedAt = 0;
  const { server, port } = await startServer(() => {
    if (!arrivedAt) arrivedAt = performance.now();
  });
  const env = {
    ...process.env,
    XDG_CONFIG_HOME: cfgDir,
    PROTOCTL_CONTROLLER: `127.0.0.1:${port}`,
    PROTOCTL_TRACE_STARTUP: "1",
    PROTOCTL_CONTEXT: "",
  };
  const arrival: number[] = [];
  const traced: number[] = [];
  const nodeBase: number[] = [];
  try {
    // One warm-up each (page cache), not counted.
    await runOnce(process.execPath, [cli, "node", "ls"], env);
    await runOnce(process.execPath, ["-e", "0"], env);
    for (let i = 0; i < runs; i++) {
      arrivedAt = 0;
      const r = await runOnce(process.execPath, [cli, "node", "ls"], env);
      if (r.code !== 0 || !arrivedAt)
        throw new Error(`protoctl node ls failed (exit ${r.code}): ${r.stderr}`);
      arrival.push(arrivedAt - r.startedAt);
      const m = /protoctl-startup-ms ([0-9.]+)/.exec(r.stderr);
      if (m) traced.push(Number(m[1]));
      const b = await runOnce(process.execPath, ["-e", "0"], env);
      nodeBase.push(b.endedAt - b.startedAt);
    }
  } finally {
    server.forceShutdown();
    await rm(cfgDir, { recursive: true, force: true });
  }
  const p50 = median(arrival);
  const detail = {
    runs,
    arrival_p90_ms: round(pct(arrival, 90)),
    traced_p50_ms: traced.length ? round(median(traced)) : null,
    over_node_ms: round(p50 - median(nodeBase)),
  };
  process.stdout.write(`${JSON.stringify(detail)}\n`);
  process.stdout.write(
    `${JSON.stringify({
      bench: "cli-startup",
      p50_ms: round(p50),
      node_p50_ms: round(median(nodeBase)),
      target: TARGET_MS,
      ok: p50 < TARGET_MS,
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`cli-startup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
