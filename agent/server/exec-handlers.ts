/**
 * AgentService.Exec: a bidi stream. First input message is `start`; the
 * server answers `startedPid`, then stdout/stderr chunks, then `exitCode`
 * (128+N when killed by signal N). Later inputs carry stdin, end of stdin,
 * terminal resizes and signals. A client that goes away gets its process
 * killed (SIGHUP, as a terminal hangup would).
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { invalidArgument } from "../../common/errors.js";
import type { AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";
import type { ExecInput, ExecOutput } from "../../proto/gen/protoctl/v1/types.js";
import type { AgentContext } from "./context.js";
import { failStream } from "./streams.js";

const SIGNALS = new Set([
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGKILL",
  "SIGTERM",
  "SIGUSR1",
  "SIGUSR2",
  "SIGSTOP",
  "SIGCONT",
  "SIGWINCH",
  "SIGTSTP",
]);

export function execHandlers(ctx: AgentContext): Pick<AgentServiceServer, "exec"> {
  return {
    exec: (call: ServerDuplexStream<ExecInput, ExecOutput>) => {
      runExec(ctx, call).catch((err) => failStream(call, err));
    },
  };
}

async function runExec(ctx: AgentContext, call: ServerDuplexStream<ExecInput, ExecOutput>): Promise<void> {
  const first = await new Promise<ExecInput | undefined>((resolve) => {
    call.once("data", resolve);
    call.once("end", () => resolve(undefined));
  });
  call.pause();
  const start = first?.input?.$case === "start" ? first.input.start : undefined;
  if (!start) throw invalidArgument("Exec starts with a `start` message", { reason: "START_REQUIRED" });
  const session = await ctx.envs.exec(start);
  let done = false;
  call.on("cancelled", () => {
    if (!done) session.signal("SIGHUP");
  });
  call.write({ output: { $case: "startedPid", startedPid: session.pid } });
  session.stdout.on("data", (b: Buffer) => call.write({ output: { $case: "stdout", stdout: b } }));
  session.stderr?.on("data", (b: Buffer) => call.write({ output: { $case: "stderr", stderr: b } }));
  call.on("data", (m: ExecInput) => {
    const i = m.input;
    if (!i || done) return;
    switch (i.$case) {
      case "stdin":
        session.stdin.write(i.stdin);
        break;
      case "stdinEof":
        session.stdin.end();
        break;
      case "resize":
        session.resize(i.resize.rows, i.resize.cols);
        break;
      case "signal":
        if (SIGNALS.has(i.signal)) session.signal(i.signal as NodeJS.Signals);
        break;
      default:
        break;
    }
  });
  call.on("end", () => {
    if (!done && !start.tty) session.stdin.end();
  });
  call.resume();
  const code = await ctx.envs.exitOf(session);
  done = true;
  call.write({ output: { $case: "exitCode", exitCode: code } });
  call.end();
}
