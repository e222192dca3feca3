/**
 * One runner for the processes whose output is progress (debootstrap, ansible,
 * commands in nspawn for builds and updates): stdout and stderr merged, passed
 * on whole lines at a time as they come (a line split across chunks is passed
 * whole; `hide` drops lines a user should not see), and the tail kept for the
 * error message. Through common/exec's execa wrapper, argv only.
 */
import { spawnProcess } from "./exec.js";

export interface ProgressRunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Bytes fed to stdin; stdin is closed (ignored) without it. */
  input?: Uint8Array;
  signal?: AbortSignal;
  /** Whole lines of output (several at once, each ending in "\n" but a last one at exit). */
  onLines?: (text: string) => void;
  /** Lines not passed to onLines (they stay in `output`). */
  hide?: (line: string) => boolean;
  /** How much of the output's end the result keeps; default 256 KiB. */
  keepChars?: number;
}

export interface ProgressRunResult {
  /** The exit code; 128 when killed by a signal, -1 when it did not start. */
  exitCode: number;
  /** stdout and stderr interleaved, the last `keepChars`. */
  output: string;
  noSpace: boolean;
}

/** Splits chunks into whole lines for `emit`, minus those `hide` matches; `flush` passes a last partial line. */
export function lineSplitter(
  emit: (text: string) => void,
  hide: (line: string) => boolean = () => false,
): { write(chunk: string): void; flush(): void } {
  let partial = "";
  return {
    write(chunk: string) {
      const text = partial + chunk;
      const end = text.lastIndexOf("\n");
      if (end < 0) {
        partial = text;
        return;
      }
      partial = text.slice(end + 1);
      const kept = text
        .slice(0, end + 1)
        .split(/(?<=\n)/)
        .filter((l) => !hide(l));
      if (kept.length > 0) emit(kept.join(""));
    },
    flush() {
      if (partial && !hide(partial)) emit(partial);
      partial = "";
    },
  };
}

/**
 * Runs `command` to its end, streaming its output as lines. A non-zero exit
 * is a result, not an error; an abort through `signal` rejects with an AbortError.
 */
export async function runWithProgress(
  command: string,
  args: readonly string[],
  opts: ProgressRunOptions = {},
): Promise<ProgressRunResult> {
  const keep = opts.keepChars ?? 256 * 1024;
  const child = spawnProcess(command, args, {
    cwd: opts.cwd,
    env: opts.env,
    reject: false,
    ...(opts.input ? { input: opts.input } : { stdin: "ignore" as const }),
    cancelSignal: opts.signal,
    forceKillAfterDelay: 3000,
    encoding: "utf8",
    buffer: false,
  });
  let out = "";
  // one splitter per pipe: a partial line of one is never glued to the other's
  const splitters = [child.stdout, child.stderr].map((pipe) => {
    const lines = lineSplitter((t) => opts.onLines?.(t), opts.hide);
    pipe?.setEncoding("utf8");
    pipe?.on("data", (chunk: string) => {
      out += chunk;
      if (out.length > 2 * keep) out = out.slice(-keep);
      lines.write(chunk);
    });
    return lines;
  });
  const res = await child;
  for (const l of splitters) l.flush();
  if (res.isCanceled) throw Object.assign(new Error("cancelled"), { name: "AbortError" });
  out = out.slice(-keep);
  return {
    exitCode: res.exitCode ?? (res.signal ? 128 : -1),
    output: out,
    noSpace: /No space left on device|ENOSPC/i.test(out),
  };
}
