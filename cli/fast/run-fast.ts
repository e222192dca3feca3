/**
 * Runs a fast-path command (argv.ts) with the same output and exit status as
 * the full CLI (cli/commands/version.ts, cli/commands/env-exec.ts without -i
 * or -t, `env create` and `env rm` of cli/commands/env.ts). Returns
 * undefined when the full CLI must run instead; that is decided before
 * anything is sent, so nothing runs twice.
 */
import type { FastPlan } from "./argv.js";
import { FastCallError, FastConnection } from "./call.js";
import { fastContext } from "./context.js";
import type { FastFailure } from "./report.js";
import {
  decodeEnvSummary,
  decodeExecOutput,
  decodeVersionInfo,
  encodeCreateEnv,
  encodeDeleteEnv,
  encodeExecStart,
  encodeSignal,
  encodeStdinEof,
  envPhaseLabel,
  type VersionInfoMsg,
} from "./wire.js";

const SERVICE = "/protoctl.v1.ControlService";

export async function runFast(
  plan: FastPlan,
  clientVersion: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number | undefined> {
  const ctx = fastContext(env);
  if (!ctx) return undefined;
  const conn = new FastConnection(ctx);
  try {
    switch (plan.kind) {
      case "version":
        return await version(conn, plan.json, clientVersion);
      case "exec":
        return await exec(conn, plan.env, plan.command);
      case "create":
        return await create(conn, plan.env, plan.base, plan.version);
      case "rm":
        return await remove(conn, plan.env);
    }
  } catch (err) {
    if (!(err instanceof FastCallError) && !("noExitStatus" in (err as object))) throw err;
    const failure: FastFailure =
      err instanceof FastCallError ? { status: err.failure } : { noExitStatus: true };
    const { reportFastFailure } = await import("./report.js");
    return reportFastFailure(ctx.address, failure);
  } finally {
    conn.close();
  }
}

function traceFirstRpc(): void {
  // the full CLI's PROTOCTL_TRACE_STARTUP line (cli/client/connect.ts markFirstRpc)
  if (process.env.PROTOCTL_TRACE_STARTUP) {
    process.stderr.write(`protoctl-startup-ms ${performance.now().toFixed(2)}\n`);
  }
}

async function version(conn: FastConnection, json: boolean, client: string): Promise<number> {
  if (!json) process.stdout.write(`client: ${client}\n`);
  let v: VersionInfoMsg | undefined;
  traceFirstRpc();
  const { stream, done } = await conn.call(`${SERVICE}/GetVersion`, {
    deadlineMs: 5000,
    onMessage: (m) => {
      v = decodeVersionInfo(m);
    },
  });
  stream.end(Buffer.from([0, 0, 0, 0, 0])); // one empty GetVersionRequest
  await done;
  if (!v) throw new FastCallError({ code: 13, message: "the controller sent an empty response", md: {} });
  if (json) {
    const info = {
      client,
      server: v.version,
      controller: v.controller,
      leader: v.leader,
      cluster: v.cluster,
    };
    process.stdout.write(`${JSON.stringify(info)}\n`);
  } else {
    process.stdout.write(`server: ${v.version} (controller ${v.controller}, leader ${v.leader || "-"})\n`);
  }
  return 0;
}

async function exec(conn: FastConnection, envName: string, command: string[]): Promise<number> {
  let exitCode: number | undefined;
  const pending: Promise<void>[] = [];
  traceFirstRpc();
  const { stream, done } = await conn.call(`${SERVICE}/ExecEnv`, {
    onMessage: (m) => {
      const out = decodeExecOutput(m);
      if (out.kind === "stdout" || out.kind === "stderr") {
        const sink = out.kind === "stdout" ? process.stdout : process.stderr;
        if (!sink.write(out.data)) {
          stream.pause();
          pending.push(
            new Promise((r) =>
              sink.once("drain", () => {
                stream.resume();
                r();
              }),
            ),
          );
        }
      } else if (out.kind === "exitCode") exitCode = out.code;
    },
  });
  FastConnection.write(stream, encodeExecStart(envName, command));
  FastConnection.write(stream, encodeStdinEof());

  // without -t, as env-exec.ts: Ctrl-C is sent as SIGINT, a second one gives up (exit 130)
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) FastConnection.write(stream, encodeSignal("SIGINT"));
    else FastConnection.cancel(stream);
  };
  const onTerm = () => FastConnection.write(stream, encodeSignal("SIGTERM"));
  const onHup = () => FastConnection.write(stream, encodeSignal("SIGHUP"));
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onTerm);
  process.on("SIGHUP", onHup);
  try {
    await done;
    await Promise.all(pending);
  } catch (err) {
    if (interrupts > 1) return 130;
    throw err;
  } finally {
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onTerm);
    process.off("SIGHUP", onHup);
  }
  if (exitCode === undefined) {
    if (interrupts > 1) return 130;
    throw Object.assign(new Error("no exit status"), { noExitStatus: true });
  }
  return exitCode;
}

/** One request, one response message (no deadline: both wait for the env). */
async function unary(conn: FastConnection, method: string, req: Buffer): Promise<Buffer> {
  let res: Buffer | undefined;
  traceFirstRpc();
  const { stream, done } = await conn.call(`${SERVICE}/${method}`, {
    onMessage: (m) => {
      res = Buffer.from(m);
    },
  });
  FastConnection.write(stream, req);
  stream.end();
  await done;
  if (!res) throw new FastCallError({ code: 13, message: "the controller sent an empty response", md: {} });
  return res;
}

async function create(conn: FastConnection, env: string, base: string, version: number): Promise<number> {
  const s = decodeEnvSummary(await unary(conn, "CreateEnv", encodeCreateEnv(env, base, version)));
  const where = s.node ? ` on node ${s.node}` : "";
  const v = s.baseVersion ? `${base}@${s.baseVersion}` : base;
  process.stdout.write(`env/${env} created from ${v}${where} (${envPhaseLabel(s.phase)})\n`);
  return 0;
}

async function remove(conn: FastConnection, env: string): Promise<number> {
  await unary(conn, "DeleteEnv", encodeDeleteEnv(env));
  process.stdout.write(`env/${env} deleted\n`);
  return 0;
}
