/**
 * The one way protoctl runs system commands: arguments as an array (never a
 * shell string), an optional AbortSignal and timeout, and a typed
 * `CommandError` carrying command, arguments, exit code and stderr.
 */
import { type ChildProcess, spawn as nodeSpawn, type SpawnOptions } from "node:child_process";
import { type Options as ExecaOptions, execa, type ResultPromise } from "execa";
import { Code, ProtoctlError } from "./errors.js";

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Replace the environment instead of extending process.env. */
  extendEnv?: boolean;
  input?: string | Uint8Array;
  signal?: AbortSignal;
  /** Milliseconds; the process is killed (SIGTERM, then SIGKILL) past it. */
  timeoutMs?: number;
  /** Return non-zero exits instead of throwing. */
  allowFailure?: boolean;
  /** Keep stdout as bytes. */
  binary?: boolean;
}

export interface RunResult {
  command: string;
  args: readonly string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export class CommandError extends Error {
  override readonly name = "CommandError";
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    readonly stdout: string,
    readonly signal: string | undefined,
    readonly timedOut: boolean,
    cause?: unknown,
  ) {
    const how = timedOut
      ? "timed out"
      : signal
        ? `was killed by ${signal}`
        : exitCode === undefined
          ? "could not start"
          : `exited with ${exitCode}`;
    const tail = lastLines(stderr || stdout, 3);
    super(`${command} ${how}${tail ? `: ${tail}` : ""}`, cause === undefined ? undefined : { cause });
  }

  /** True when the tool reported that the filesystem is full. */
  get noSpace(): boolean {
    return /No space left on device|ENOSPC/i.test(this.stderr + this.stdout);
  }

  /** True when the binary itself is missing. */
  get notInstalled(): boolean {
    return this.exitCode === undefined && /ENOENT/.test(String((this.cause as Error | undefined)?.message));
  }

  /** A ProtoctlError for the wire: full pool → RESOURCE_EXHAUSTED, else INTERNAL with the output. */
  toProtoctl(message?: string, subject?: string): ProtoctlError {
    if (this.noSpace) {
      return new ProtoctlError(Code.RESOURCE_EXHAUSTED, message ?? "the pool is full", {
        reason: "POOL_FULL",
        hint: "free space (delete envs or old base versions) or grow the pool",
        subject,
        output: this.stderr,
        cause: this,
      });
    }
    return new ProtoctlError(Code.INTERNAL, message ? `${message}: ${this.message}` : this.message, {
      reason: "COMMAND_FAILED",
      subject,
      output: this.stderr || this.stdout,
      metadata: { command: this.command, exitCode: String(this.exitCode ?? "") },
      cause: this,
    });
  }
}

function lastLines(s: string, n: number): string {
  return s.trim().split("\n").slice(-n).join(" | ").slice(0, 500);
}

/** Runs a command to completion. Throws CommandError on non-zero exit unless allowFailure. */
export async function run(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const started = performance.now();
  const res = await execa(command, args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: opts.extendEnv ?? true,
    input: opts.input,
    cancelSignal: opts.signal,
    timeout: opts.timeoutMs,
    forceKillAfterDelay: 2000,
    reject: false,
    stripFinalNewline: false,
    encoding: "utf8",
    stdin: opts.input === undefined ? "ignore" : "pipe",
  });
  const stdout = String(res.stdout ?? "");
  const stderr = String(res.stderr ?? "");
  const result: RunResult = {
    command,
    args,
    exitCode: res.exitCode ?? -1,
    stdout,
    stderr,
    durationMs: performance.now() - started,
  };
  if (res.failed && !(opts.allowFailure && res.exitCode !== undefined && !res.timedOut && !res.isCanceled)) {
    throw new CommandError(
      command,
      args,
      res.exitCode,
      stderr,
      stdout,
      res.signal ?? undefined,
      res.timedOut,
      res.cause ?? undefined,
    );
  }
  return result;
}

/** Runs a command and returns its trimmed stdout. */
export async function output(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<string> {
  return (await run(command, args, opts)).stdout.trim();
}

/** True when the command exits 0. Never throws for a non-zero exit or a missing binary. */
export async function succeeds(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<boolean> {
  try {
    return (await run(command, args, { ...opts, allowFailure: true })).exitCode === 0;
  } catch {
    return false;
  }
}

/**
 * Starts a long-lived process (a daemon, an nspawn machine, a stream). The
 * caller owns it; errors surface through the returned promise as CommandError.
 */
export function spawnProcess(
  command: string,
  args: readonly string[],
  opts: Omit<ExecaOptions, "shell"> = {},
): ResultPromise {
  return execa(command, args, { ...opts, shell: false } as ExecaOptions);
}

/**
 * Starts a process with Node's own `spawn` (argv array, never a shell):
 * for hot paths (machine start, exec) where execa's per-call setup costs
 * more than the work itself (measured ~1.5-2.5 ms per spawn here). No
 * promise, no buffering: the caller owns the ChildProcess and its stdio.
 */
export function spawnDirect(
  command: string,
  args: readonly string[],
  opts: Omit<SpawnOptions, "shell"> = {},
): ChildProcess {
  return nodeSpawn(command, args, { ...opts, shell: false });
}
