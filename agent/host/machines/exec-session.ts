/**
 * Exec into a running machine: `nsenter -t <leader> -a` started through the
 * cgroup wrapper (so the process counts against the env's limits), the
 * environment given by `env -i KEY=VALUE…` as separate argv entries. Pipes for
 * plain sessions, node-pty for TTY sessions.
 *
 * nsenter forks once to enter the PID namespace and waits; when its child dies
 * of a signal it kills itself with the same one, so the wrapper's own exit
 * status is the command's. Signals go to that child (found in /proc), which is
 * the command itself.
 */

import { constants as osConstants } from "node:os";
import { PassThrough, Writable } from "node:stream";
import { spawn as ptySpawn } from "node-pty";
import { spawnProcess } from "../../../common/exec.js";
import type { ExecSession } from "../interfaces.js";
import { wrapInCgroups } from "./nspawn-args.js";
import { childrenOf } from "./proc.js";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Environment of the host-side wrapper processes: PATH, plus the test run
 * marker when set, so the leak check can tell whose machine a process is.
 */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { PATH: DEFAULT_PATH };
  const marker = process.env.PROTOCTL_TEST_RUN;
  if (marker) env.PROTOCTL_TEST_RUN = marker;
  return env;
}

export interface ExecPlan {
  leaderPid: number;
  procsFiles: string[];
  command: string[];
  env: Record<string, string>;
  workdir: string;
  tty: boolean;
  rows: number;
  cols: number;
}

/**
 * Changes directory inside the env before the command. nsenter's own --wd
 * opens the path on the host side, before entering the mount namespace, so
 * it is not used: entering the mount namespace already lands in the env's "/".
 */
export const CHDIR_SCRIPT = 'cd -- "$1" || exit 126; shift; exec "$@"';

/** argv after `sh`: the wrapper, then nsenter, then env -i, then the command. */
export function execArgv(plan: ExecPlan): string[] {
  const envArgs = Object.entries(plan.env).map(([k, v]) => `${k}=${v}`);
  const cd =
    plan.workdir && plan.workdir !== "/" ? ["/bin/sh", "-c", CHDIR_SCRIPT, "protoctl-cd", plan.workdir] : [];
  return wrapInCgroups(plan.procsFiles, [
    "nsenter",
    "-t",
    String(plan.leaderPid),
    "-a",
    "env",
    "-i",
    ...envArgs,
    ...cd,
    ...plan.command,
  ]);
}

/** Exit code from a wait status: the code, or 128+N for signal N. */
export function exitCodeOf(
  code: number | null | undefined,
  signal: string | number | null | undefined,
): number {
  if (typeof signal === "string" && signal) {
    const n = (osConstants.signals as Record<string, number>)[signal];
    return 128 + (n ?? 0);
  }
  if (typeof signal === "number" && signal > 0) return 128 + signal;
  return code ?? 255;
}

function signalInner(wrapperPid: number, sig: NodeJS.Signals): void {
  // wrapper (now nsenter) → its forked child, the command inside the env
  const inner = childrenOf(wrapperPid)[0];
  try {
    process.kill(inner ?? wrapperPid, sig);
  } catch {
    // already gone
  }
}

export function startExec(plan: ExecPlan): ExecSession {
  return plan.tty ? startTty(plan) : startPiped(plan);
}

function startPiped(plan: ExecPlan): ExecSession {
  const child = spawnProcess("/bin/sh", execArgv(plan), {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    buffer: false,
    reject: false,
    extendEnv: false,
    env: baseEnv(),
  });
  // Exit means the command's exit, not the end of its output streams: a
  // background child may hold them open long after (see drainAfterExit).
  const exit = new Promise<number>((resolve) => {
    child.once("exit", (code, sig) => resolve(exitCodeOf(code, sig)));
    child.once("error", () => resolve(255));
  });
  void child.catch(() => undefined);
  // stdin errors (EPIPE after exit) are not the caller's concern.
  child.stdin?.on("error", () => undefined);
  return {
    pid: child.pid ?? -1,
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    resize: () => undefined,
    signal: (sig) => signalInner(child.pid ?? -1, sig),
    exit,
  };
}

function startTty(plan: ExecPlan): ExecSession {
  const env = { ...plan.env };
  env.TERM ??= "xterm-256color";
  const term = ptySpawn("/bin/sh", execArgv({ ...plan, env }), {
    name: env.TERM,
    rows: plan.rows || 24,
    cols: plan.cols || 80,
    env: baseEnv(),
    encoding: null,
  } as Parameters<typeof ptySpawn>[2]);
  const stdout = new PassThrough();
  term.onData((d: string | Buffer) => stdout.write(typeof d === "string" ? Buffer.from(d) : d));
  const exit = new Promise<number>((resolve) => {
    term.onExit(({ exitCode, signal }) => {
      stdout.end();
      resolve(exitCodeOf(exitCode, signal));
    });
  });
  let closed = false;
  void exit.then(() => {
    closed = true;
  });
  const stdin = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (!closed) term.write(chunk);
      cb();
    },
    final(cb) {
      // End of input on a terminal is ^D at the start of a line.
      if (!closed) term.write("\x04");
      cb();
    },
  });
  return {
    pid: term.pid,
    stdin,
    stdout,
    stderr: null,
    resize: (rows, cols) => {
      if (!closed && rows > 0 && cols > 0) term.resize(cols, rows);
    },
    signal: (sig) => signalInner(term.pid, sig),
    exit,
  };
}

/**
 * Resolves once the session's output streams ended, or `graceMs` after its
 * exit if something it started in the background still holds them open (the
 * streams are then destroyed).
 */
export async function drainAfterExit(s: ExecSession, graceMs = 200): Promise<number> {
  const ended = (r: NodeJS.ReadableStream | null) =>
    r
      ? new Promise<void>((res) => (r as import("node:stream").Readable).once("close", () => res()))
      : Promise.resolve();
  const streams = Promise.all([ended(s.stdout), ended(s.stderr)]);
  const code = await s.exit;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((res) => {
    timer = setTimeout(res, graceMs);
  });
  await Promise.race([streams, late]);
  clearTimeout(timer);
  s.stdout.destroy();
  s.stderr?.destroy();
  return code;
}
