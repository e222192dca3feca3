/**
 * Worker threads for piece copies, kept between hydrations: a worker costs
 * about 35 ms to start (a thread, an isolate, its modules), a tenth of a
 * small base's whole copy. The agent warms the pool when an attach begins
 * (SeedAttachments.warm), so the hydration that follows finds its workers
 * ready, and not at boot: each idle worker holds ~10 MB.
 *
 * A worker runs one job at a time; a job that finds no idle worker starts
 * one. Up to MAX_IDLE wait for the next hydration, for IDLE_MS at most; the
 * rest exit. Workers are unref'd: an idle pool never keeps the agent alive. A
 * cancelled job's worker is terminated (its sockets and file close with it),
 * not reused.
 */
import { Worker } from "node:worker_threads";
import type { PieceCopyJob } from "./piece-copy.js";

/** The worker's module: the .ts source when running from sources (a loader is registered). */
const COPY_WORKER = new URL(
  import.meta.url.endsWith(".ts") ? "./copy-worker.ts" : "./copy-worker.js",
  import.meta.url,
);

const MAX_IDLE = 4;
/** An idle worker exits after this long without a job (a push's hydrations come together). */
const IDLE_MS = 60_000;
/**
 * The priority of hydration copies (the workers here, and hydrate.ts's
 * nbdcopy): background work that yields the CPU to what users wait for.
 */
export const COPY_NICE = 10;
const idle: Worker[] = [];
const idleTimers = new Map<Worker, NodeJS.Timeout>();

/** Puts `w` among the idle workers, to exit after IDLE_MS unless a job takes it. */
function park(w: Worker): void {
  idle.push(w);
  const t = setTimeout(() => {
    idleTimers.delete(w);
    const i = idle.indexOf(w);
    if (i >= 0) idle.splice(i, 1);
    void w.terminate();
  }, IDLE_MS);
  t.unref();
  idleTimers.set(w, t);
}

/** An idle worker for a job (its exit timer cleared), or a new one. */
function take(): Worker {
  const w = idle.pop();
  if (!w) return start();
  clearTimeout(idleTimers.get(w));
  idleTimers.delete(w);
  return w;
}

function start(): Worker {
  const w = new Worker(COPY_WORKER, { workerData: { nice: COPY_NICE } });
  w.unref();
  // An idle worker that dies (it should not) leaves the pool.
  w.once("exit", () => {
    const i = idle.indexOf(w);
    if (i >= 0) idle.splice(i, 1);
  });
  w.on("error", () => undefined);
  return w;
}

/** Starts workers until `n` are idle. */
export function warmCopyWorkers(n: number): void {
  while (idle.length < Math.min(n, MAX_IDLE)) park(start());
}

/** What a job ended with: undefined, or the copier's error message and kind. */
export type JobFailure = { message: string; kind: string };

/** Runs `job` on a pooled worker; settles when it is done, failed or aborted. */
export function runCopyJob(
  job: PieceCopyJob,
  onBytes: (n: number) => void,
  signal: AbortSignal,
): Promise<JobFailure | undefined> {
  const w = take();
  return new Promise((resolve) => {
    const finish = (r: JobFailure | undefined, reuse: boolean) => {
      w.off("message", onMessage);
      w.off("exit", onExit);
      signal.removeEventListener("abort", onAbort);
      if (reuse && idle.length < MAX_IDLE) park(w);
      else void w.terminate();
      resolve(r);
    };
    const onMessage = (m: { bytes?: number; done?: boolean; error?: string; kind?: string }) => {
      if (m.bytes) onBytes(m.bytes);
      else if (m.done) finish(undefined, true);
      else if (m.error !== undefined) finish({ message: m.error, kind: m.kind ?? "local" }, true);
    };
    const onExit = (code: number) =>
      finish({ message: `copy worker exited (${code})`, kind: "local" }, false);
    const onAbort = () => finish({ message: "cancelled", kind: "cancelled" }, false);
    if (signal.aborted) return onAbort();
    w.on("message", onMessage);
    w.once("exit", onExit);
    signal.addEventListener("abort", onAbort);
    w.postMessage({ job });
  });
}
