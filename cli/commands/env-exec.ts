/**
 * `env exec` / `env shell` over the ExecEnv bidi stream.
 *
 * Without -t: stdout and stderr are kept apart; Ctrl-C sends SIGINT to the
 * command (a second Ctrl-C gives up locally, exit 130); stdin is sent only
 * with -i, else the command sees end-of-file at once.
 *
 * With -t: the local terminal goes raw, so every key, Ctrl-C included,
 * reaches the remote pseudo-terminal as a byte and its line discipline
 * delivers the signal to the process inside; SIGWINCH (stdout's 'resize')
 * becomes a resize message. The terminal is restored however the call ends.
 */
import { internal, invalidArgument } from "../../common/errors.js";
import { ControlServiceService } from "../../proto/gen/protoctl/v1/control.js";
import type { ExecInput, ExecOutput } from "../../proto/gen/protoctl/v1/types.js";
import type { Api } from "../client/connect.js";

/** bash when the env has it, else sh; both as login shells. */
export const LOGIN_SHELL = [
  "/bin/sh",
  "-c",
  "if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi",
];

export interface ExecOptions {
  env: string;
  command: string[];
  stdin: boolean;
  tty: boolean;
  envVars: Record<string, string>;
  workdir: string;
  user: string;
  login: boolean;
}

interface Terminal {
  rows: number;
  cols: number;
}

function terminalSize(): Terminal {
  const out = process.stdout.isTTY ? process.stdout : process.stderr.isTTY ? process.stderr : undefined;
  return { rows: out?.rows ?? 24, cols: out?.columns ?? 80 };
}

/** Runs the command and resolves with its exit status (128+N when killed by signal N). */
export async function execInEnv(api: Api, o: ExecOptions): Promise<number> {
  if (o.tty && !process.stdin.isTTY) {
    throw invalidArgument("-t needs a terminal on stdin", {
      reason: "NOT_A_TTY",
      hint: "drop -t when piping input (use -i alone)",
    });
  }
  if (o.command.length === 0) {
    throw invalidArgument("no command given", {
      reason: "INVALID_ARGUMENT",
      hint: "write the command after --",
    });
  }
  const size = terminalSize();
  // over the unary transport's HTTP/2 session: no grpc-js to load (common/h2-duplex.ts)
  const call = await api.duplexH2<ExecInput, ExecOutput>(ControlServiceService.execEnv);
  const cleanups: Array<() => void> = [];
  const send = (input: ExecInput["input"]) => {
    if (!call.writable) return true;
    return call.write({ input });
  };

  send({
    $case: "start",
    start: {
      env: o.env,
      command: o.command,
      tty: o.tty,
      envVars: o.envVars,
      workdir: o.workdir,
      user: o.user,
      rows: o.tty ? size.rows : 0,
      cols: o.tty ? size.cols : 0,
      login: o.login,
    },
  });

  // --- input ---
  const stdin = process.stdin;
  if (o.stdin || o.tty) {
    if (o.tty && stdin.isTTY) {
      stdin.setRawMode(true);
      cleanups.push(() => stdin.setRawMode(false));
    }
    const onData = (chunk: Buffer) => {
      if (!send({ $case: "stdin", stdin: chunk })) {
        stdin.pause();
        call.once("drain", () => stdin.resume());
      }
    };
    const onEnd = () => send({ $case: "stdinEof", stdinEof: true });
    stdin.on("data", onData);
    stdin.once("end", onEnd);
    stdin.resume();
    cleanups.push(() => {
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      stdin.pause();
    });
  } else {
    send({ $case: "stdinEof", stdinEof: true });
  }

  // --- terminal size ---
  if (o.tty) {
    const onResize = () => {
      const s = terminalSize();
      send({ $case: "resize", resize: { rows: s.rows, cols: s.cols } });
    };
    const out = process.stdout.isTTY ? process.stdout : process.stderr;
    out.on("resize", onResize);
    // Node only emits 'resize' on SIGWINCH when stdout is the TTY; listen to the signal too.
    process.on("SIGWINCH", onResize);
    cleanups.push(() => {
      out.off("resize", onResize);
      process.off("SIGWINCH", onResize);
    });
  }

  // --- signals (raw mode turns Ctrl-C into a byte, so these fire only without -t) ---
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) send({ $case: "signal", signal: "SIGINT" });
    else call.cancel();
  };
  const forward = (sig: "SIGTERM" | "SIGHUP") => () => {
    send({ $case: "signal", signal: sig });
  };
  const onTerm = forward("SIGTERM");
  const onHup = forward("SIGHUP");
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onTerm);
  process.on("SIGHUP", onHup);
  cleanups.push(() => {
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onTerm);
    process.off("SIGHUP", onHup);
  });

  // --- output ---
  try {
    let exitCode: number | undefined;
    for await (const msg of call as AsyncIterable<ExecOutput>) {
      const out = msg.output;
      if (!out) continue;
      if (out.$case === "stdout") {
        if (!process.stdout.write(out.stdout)) await waitDrain(process.stdout);
      } else if (out.$case === "stderr") {
        if (!process.stderr.write(out.stderr)) await waitDrain(process.stderr);
      } else if (out.$case === "exitCode") {
        exitCode = out.exitCode;
      }
    }
    if (exitCode === undefined) {
      if (interrupts > 1) return 130;
      throw internal("the exec stream ended without an exit status", {
        reason: "EXEC_NO_STATUS",
        hint: "the env may have stopped; see `protoctl env describe` and `protoctl env logs`",
      });
    }
    return exitCode;
  } catch (err) {
    if (interrupts > 1) return 130;
    throw api.explain(err);
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        c();
      } catch {
        // restoring the terminal must not hide the real outcome
      }
    }
    call.end();
  }
}

function waitDrain(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((r) => stream.once("drain", () => r()));
}
