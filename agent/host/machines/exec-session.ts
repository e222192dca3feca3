/**
 * Exec into a running machine: `nsenter -t <leader> -a` in the env's cgroups
 * (so the process counts against the env's limits), the environment given by
 * `env -i KEY=VALUE…` as separate argv entries. Plain sessions use a
 * pre-joined slot when one is ready (exec-slot.ts), else the cgroup wrapper;
 * TTY sessions use node-pty (loaded on first use: it is a native addon the
 * agent does not need until someone asks for a terminal).
 *
 * nsenter forks once to enter the PID namespace and waits; when its child dies
 * of a signal it kills itself with the same one, so the wrapper's own exit
 * status is the command's. Signals go to that child (found in /proc), which is
 * the command itself.
 */

import type { ChildProcess } from "node:child_process";
import { constants as osConstants } from "node:os";
import { PassThrough, type Readable, Writable } from "node:stream";
import { spawnDirect } from "../../../common/exec.js";
import type { ExecSession } from "../interfaces.js";
import type { ExecSlot } from "./exec-slot.js";
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
  /** Numeric ids to run as (nsenter -S/-G); root when absent. */
  user?: { uid: number; gid: number };
}

/**
 * Changes directory inside the env before the command. nsenter's own --wd
 * opens the path on the host side, before entering the mount namespace, so
 * it is not used: entering the mount namespace already lands in the env's "/".
 */
export const CHDIR_SCRIPT = 'cd -- "$1" || exit 126; shift; exec "$@"';

/** nsenter, then env -i, then the command: what runs once in the env's cgroups. */
export function innerArgv(plan: ExecPlan): string[] {
  const envArgs = Object.entries(plan.env).map(([k, v]) => `${k}=${v}`);
  const cd =
    plan.workdir && plan.workdir !== "/" ? ["/bin/sh", "-c", CHDIR_SCRIPT, "protoctl-cd", plan.workdir] : [];
  // -S/-G: nsenter drops supplementary groups, then setgid, then setuid, after entering
  const user = plan.user ? ["-S", String(plan.user.uid), "-G", String(plan.user.gid)] : [];
  return [
    "nsenter",
    "-t",
    String(plan.leaderPid),
    "-a",
    ...user,
    "env",
    "-i",
    ...envArgs,
    ...cd,
    ...plan.command,
  ];
}

/** argv after `sh`: the cgroup wrapper, then innerArgv. */
export function execArgv(plan: ExecPlan): string[] {
  return wrapInCgroups(plan.procsFiles, innerArgv(plan));
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

/** Starts a session; a ready slot (already in the env's cgroups) is used for plain sessions. */
export async function startExec(plan: ExecPlan, slot?: ExecSlot): Promise<ExecSession> {
  if (plan.tty) {
    slot?.discard();
    return startTty(plan);
  }
  return startPiped(plan, slot);
}

function startPiped(plan: ExecPlan, slot?: ExecSlot): ExecSession {
  let child: ChildProcess;
  if (slot?.alive()) child = slot.launch(innerArgv(plan));
  else {
    slot?.discard();
    child = spawnDirect("/bin/sh", execArgv(plan), { stdio: ["pipe", "pipe", "pipe"], env: baseEnv() });
  }
  // Exit means the command's exit, not the end of its output streams: a
  // background child may hold them open long after (see drainAfterExit).
  const exit = new Promise<number>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(exitCodeOf(child.exitCode, child.signalCode));
      return;
    }
    child.once("exit", (code, sig) => resolve(exitCodeOf(code, sig)));
    child.once("error", () => resolve(255));
  });
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

async function startTty(plan: ExecPlan): Promise<ExecSession> {
  const { spawn: ptySpawn } = await import("node-pty");
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
    r ? new Promise<void>((res) => (r as Readable).once("close", () => res())) : Promise.resolve();
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
