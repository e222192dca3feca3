/**
 * Progress of long work, fed by the server's OperationEvent / PushProgress
 * streams. On a terminal: a listr2 task whose title follows the current step
 * and percentage, with the last log lines under it. Elsewhere (pipes, CI):
 * plain lines on stderr, one per step change and per quarter of progress, so
 * logs stay readable. Results go to stdout; progress never does.
 */
import type { OperationEvent, OperationResult, Progress } from "../../proto/gen/protoctl/v1/types.js";

export interface ProgressSink {
  /** A progress message (step, fraction, message). */
  progress(p: Progress): void;
  /** A line of output from the work itself (build log). */
  log(line: string): void;
}

/** Whether to draw on a terminal: stderr is a TTY and the user did not ask for plain output. */
export function useTty(): boolean {
  return process.stderr.isTTY === true && process.env.CI === undefined && process.env.PROTOCTL_PLAIN !== "1";
}

export function describeProgress(p: Progress): string {
  const pct =
    p.fraction >= 0 && p.fraction <= 1 && (p.fraction > 0 || p.bytesTotal > 0)
      ? ` ${Math.round(p.fraction * 100)}%`
      : "";
  const node = p.node ? `[${p.node}] ` : "";
  const msg = p.message && p.message !== p.step ? `: ${p.message}` : "";
  return `${node}${p.step || "working"}${pct}${msg}`;
}

/** Plain-line sink: prints on step change and at each quarter of progress. */
export function plainSink(write: (line: string) => void): ProgressSink {
  let lastStep = "";
  let lastQuarter = -1;
  return {
    progress(p) {
      const key = `${p.node}/${p.step}`;
      const quarter = p.fraction >= 0 ? Math.floor(p.fraction * 4) : -1;
      if (key !== lastStep || quarter > lastQuarter) {
        write(describeProgress(p));
        lastStep = key;
        lastQuarter = quarter;
      }
    },
    log(line) {
      write(`  | ${line}`);
    },
  };
}

/**
 * Runs `work` with a sink that displays progress. `work` consumes the stream
 * and returns the final title ("imported busybox@1").
 */
export async function withProgress<T>(
  title: string,
  work: (sink: ProgressSink) => Promise<{ value: T; done: string }>,
): Promise<T> {
  if (!useTty()) {
    process.stderr.write(`${title}...\n`);
    const { value, done } = await work(plainSink((l) => process.stderr.write(`${l}\n`)));
    process.stderr.write(`${done}\n`);
    return value;
  }
  const { Listr, ListrLogger, ProcessOutput } = await import("listr2");
  const toStderr = () =>
    new ListrLogger({ processOutput: new ProcessOutput(process.stderr, process.stderr) });
  let out: T | undefined;
  await new Listr(
    [
      {
        title,
        task: async (_ctx, task) => {
          const sink: ProgressSink = {
            progress(p) {
              task.title = `${title} › ${describeProgress(p)}`;
            },
            log(line) {
              task.output = line;
            },
          };
          const { value, done } = await work(sink);
          out = value;
          task.title = done;
        },
        rendererOptions: { outputBar: 3, persistentOutput: false },
      },
    ],
    {
      exitOnError: true,
      registerSignalListeners: false,
      // Draw on stderr (the terminal here): stdout may be a pipe or a file and carries results only.
      // listr2 picks its animated renderer only when stdout is a TTY; else its line renderer, also on stderr.
      rendererOptions: { showErrorMessage: false, collapseErrors: false, logger: toStderr() },
      fallbackRendererOptions: { logger: toStderr() },
    },
  ).run();
  return out as T;
}

/** Consumes an OperationEvent stream into a sink; returns the result message, if any. */
export async function consumeOperation(
  events: AsyncIterable<OperationEvent>,
  sink: ProgressSink,
): Promise<OperationResult | undefined> {
  let result: OperationResult | undefined;
  for await (const ev of events) {
    const e = ev.event;
    if (!e) continue;
    if (e.$case === "progress") sink.progress(e.progress);
    else if (e.$case === "log") {
      for (const line of Buffer.from(e.log.data).toString("utf8").split("\n")) if (line) sink.log(line);
    } else if (e.$case === "result") result = e.result;
  }
  return result;
}
