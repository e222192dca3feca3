/**
 * Exec into a running machine through protoctl-enter (enter/enter.c): it
 * joins the env's cgroups (so the process counts against the env's limits),
 * enters every namespace of the env's PID 1 (its user namespace included),
 * takes PID 1's capability bounding set, no_new_privs and seccomp filter, then
 * execs the command with exactly the given environment (`-e KEY=VALUE`,
 * separate argv entries; no `env -i` process in between). Plain sessions use a pre-joined slot when one is ready
 * (exec-slot.ts), else the helper joins the cgroups itself; TTY sessions use
 * node-pty (loaded on first use: it is a native addon the agent does not need
 * until someone asks for a terminal).
 *
 * The helper forks once to enter the PID namespace and waits; when its child
 * dies of a signal it kills itself with the same one (as nsenter does), so its
 * own exit status is the command's. Signals go to that child (found in
 * /proc), which is the command itself.
 */

import type { ChildProcess } from "node:child_process";
import { constants as osConstants } from "node:os";
import { PassThrough, type Readable, Writable } from "node:stream";
import { spawnDirect } from "../../../common/exec.js";
import type { ExecSession } from "../interfaces.js";
import type { ExecSlot } from "./exec-slot.js";
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
  /** protoctl-enter's path (enter-helper.ts). */
  helper: string;
  leaderPid: number;
  /** PID 1's seccomp filters, copied once per env (enter-helper.ts dumpSeccomp). */
  filterFile: string;
  procsFiles: string[];
  command: string[];
  env: Record<string, string>;
  workdir: string;
  tty: boolean;
  rows: number;
  cols: number;
  /** Numeric ids inside the env's user namespace; root when absent. */
  user?: { uid: number; gid: number };
}

/**
 * protoctl-enter's arguments, then the command. `joinCgroups`:
 * the helper joins the env's cgroups itself (no slot did it). The working
 * directory is changed inside the env, after the ids (helper's -w).
 */
export function enterArgs(plan: ExecPlan, joinCgroups: boolean): string[] {
  const envArgs = Object.entries(plan.env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  const cg = joinCgroups ? plan.procsFiles.flatMap((f) => ["-c", f]) : [];
  const user = plan.user ? ["-u", String(plan.user.uid), "-g", String(plan.user.gid)] : [];
  const wd = plan.workdir && plan.workdir !== "/" ? ["-w", plan.workdir] : [];
  return [
    "exec",
    "-t",
    String(plan.leaderPid),
    "-f",
    plan.filterFile,
    ...cg,
    ...user,
    ...wd,
    ...envArgs,
    "--",
    ...plan.command,
  ];
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
  // the helper → its forked child, the command inside the env
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
  if (slot?.alive()) child = slot.launch([plan.helper, ...enterArgs(plan, false)]);
  else {
    slot?.discard();
    child = spawnDirect(plan.helper, enterArgs(plan, true), {
      stdio: ["pipe", "pipe", "pipe"],
      env: baseEnv(),
    });
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
  const term = ptySpawn(plan.helper, enterArgs({ ...plan, env }, true), {
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
