/**
 * The one way protoctl runs system commands: arguments as an array (never a
 * shell string), an optional AbortSignal and timeout, and a typed
 * `CommandError` carrying command, arguments, exit code and stderr.
 *
 * `run` is Node's own spawn with a small wrapper (buffering, timeout, abort):
 * execa is loaded only when `spawnProcess` is first called (a synchronous
 * require of the ESM package, Node ≥ 20.19). Why: importing execa costs the
 * agent ~8 MB of RSS (~260 module files) and it runs commands only through
 * `run` and `spawnDirect` on its hot paths (bench/env-create's RSS target).
 */
import { type ChildProcess, spawn as nodeSpawn, type SpawnOptions } from "node:child_process";
import { createRequire } from "node:module";
import type { Options as ExecaOptions, ResultPromise } from "execa";
import { Code, ProtoctlError } from "./errors.js";

/** After a timeout or abort, SIGTERM first and SIGKILL this much later. */
const FORCE_KILL_AFTER_MS = 2000;

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

interface Outcome {
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  canceled: boolean;
  /** The spawn error (a missing binary, EACCES…). */
  error?: Error;
}

function environment(opts: RunOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = (opts.extendEnv ?? true) ? { ...process.env } : {};
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Spawns, collects output, applies timeout and abort; never rejects. */
function execute(command: string, args: readonly string[], opts: RunOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let canceled = false;
    let spawnError: Error | undefined;
    let timer: NodeJS.Timeout | undefined;
    let forceTimer: NodeJS.Timeout | undefined;
    if (opts.signal?.aborted) {
      resolve({ exitCode: undefined, signal: undefined, stdout: "", stderr: "", timedOut, canceled: true });
      return;
    }
    const child = nodeSpawn(command, args, {
      cwd: opts.cwd,
      env: environment(opts),
      shell: false,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const stop = () => {
      child.kill("SIGTERM");
      forceTimer ??= setTimeout(() => child.kill("SIGKILL"), FORCE_KILL_AFTER_MS);
      forceTimer.unref();
    };
    const onAbort = () => {
      canceled = true;
      stop();
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true;
        stop();
      }, opts.timeoutMs);
    }
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    if (child.stdin) {
      // a command that exits without reading its input is not an error of ours
      child.stdin.on("error", () => undefined);
      child.stdin.end(opts.input);
    }
    child.once("error", (e) => {
      spawnError = e;
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(forceTimer);
      opts.signal?.removeEventListener("abort", onAbort);
      resolve({
        exitCode: spawnError ? undefined : (code ?? undefined),
        signal: signal ?? undefined,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        timedOut,
        canceled,
        error: spawnError,
      });
    });
  });
}

/** Runs a command to completion. Throws CommandError on non-zero exit unless allowFailure. */
export async function run(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const started = performance.now();
  const res = await execute(command, args, opts);
  const result: RunResult = {
    command,
    args,
    exitCode: res.exitCode ?? -1,
    stdout: res.stdout,
    stderr: res.stderr,
    durationMs: performance.now() - started,
  };
  const failed =
    res.exitCode !== 0 || res.signal !== undefined || res.timedOut || res.canceled || res.error !== undefined;
  const tolerated =
    opts.allowFailure &&
    res.exitCode !== undefined &&
    res.signal === undefined &&
    !res.timedOut &&
    !res.canceled &&
    res.error === undefined;
  if (failed && !tolerated) {
    throw new CommandError(
      command,
      args,
      res.exitCode,
      res.stderr,
      res.stdout,
      res.signal,
      res.timedOut,
      res.error ?? (res.canceled ? new Error("canceled") : undefined),
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
  execaModule ??= createRequire(import.meta.url)("execa") as typeof import("execa");
  return execaModule.execa(command, args, { ...opts, shell: false } as ExecaOptions);
}

let execaModule: typeof import("execa") | undefined;

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
