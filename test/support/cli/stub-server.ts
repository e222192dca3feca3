/**
 * Unit-test helpers: a ControlService stub on a loopback port (only the
 * methods a test gives; the rest answer UNIMPLEMENTED) and a way to run the
 * CLI's `main` in-process with captured stdout/stderr.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import { ControlServiceService } from "../../../proto/gen/protoctl/v1/control.js";

export interface Stub {
  address: string;
  calls: string[];
  stop(): Promise<void>;
}

export async function startStub(
  impl: Record<string, unknown>,
  credentials: ServerCredentials = ServerCredentials.createInsecure(),
): Promise<Stub> {
  const server = new Server();
  const calls: string[] = [];
  const full: Record<string, unknown> = {};
  for (const key of Object.keys(ControlServiceService)) {
    const given = impl[key] as ((...a: unknown[]) => unknown) | undefined;
    full[key] = (...args: unknown[]) => {
      calls.push(key);
      if (given) return given(...args);
      const [call, cb] = args as [
        { emit?: unknown; end?: () => void; destroy?: (e: Error) => void },
        unknown,
      ];
      const err = Object.assign(new Error("not in stub"), {
        code: status.UNIMPLEMENTED,
        details: "not in stub",
      });
      if (typeof cb === "function") (cb as (e: Error) => void)(err);
      else call.destroy?.(err);
    };
  }
  server.addService(ControlServiceService, full as never);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? rej(err) : res(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    stop: () => new Promise((r) => server.tryShutdown(() => r())),
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main(args)` in this process with env overrides; stdout/stderr captured. */
export async function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<CliResult> {
  const { main } = await import("../../../cli/run.js");
  const cfg = await mkdtemp(join(tmpdir(), "protoctl-cli-test-"));
  const saved: Record<string, string | undefined> = {};
  const allEnv = {
    XDG_CONFIG_HOME: cfg,
    PROTOCTL_CONFIG: undefined,
    PROTOCTL_CONTEXT: undefined,
    PROTOCTL_PLAIN: "1",
    ...env,
  };
  for (const [k, v] of Object.entries(allEnv)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  let stdout = "";
  let stderr = "";
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stderr.write;
  const savedExit = process.exitCode;
  process.exitCode = undefined;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
    process.exitCode = savedExit;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(cfg, { recursive: true, force: true });
  }
}
