/**
 * A pooled worker thread running piece copies (piece-copy.ts), one job at a
 * time (copy-pool.ts). It lowers its own thread's priority to nice 10 (Linux
 * applies setpriority to the calling thread) before it loads its modules, so
 * hydration takes the CPU that the agent's main thread, env starts and execs
 * leave, as the nbdcopy path does with `nice -n 10`.
 *
 * Job in: {job}. Messages out: {bytes: n} per finished piece, then
 * {done: true} or {error: message, kind}.
 */
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import type { PieceCopyJob } from "./piece-copy.js";

try {
  setPriority(0, (workerData as { nice: number }).nice);
} catch {
  // Not permitted: run at the agent's priority.
}
// Loaded after the priority is lowered: module loading is most of a worker's start-up.
const { copyPieces, PieceCopyError } = await import("./piece-copy.js");
parentPort!.on("message", ({ job }: { job: PieceCopyJob }) => {
  copyPieces(job, (bytes) => parentPort!.postMessage({ bytes })).then(
    () => parentPort!.postMessage({ done: true }),
    (err: unknown) =>
      parentPort!.postMessage({
        error: (err as Error).message,
        kind: err instanceof PieceCopyError ? err.kind : "local",
      }),
  );
});
