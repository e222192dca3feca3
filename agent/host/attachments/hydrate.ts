/**
 * Hydration copy: the whole export to a local file, holes kept, checksummed.
 *
 * A "blake3-4m" seed (what agents publish) is copied by piece copiers in
 * pooled worker threads (piece-copy.ts, copy-pool.ts): each 4 MiB piece is
 * received, hashed and written once. Measured on the 2-core box, TLS, one
 * node (bench/propagate): a 2 GiB base hydrated in 1.23-1.31x a raw
 * nbdcopy of the same export, against 1.42-1.56x with nbdcopy and a hash
 * that follows it (below); both cores are busy either way, so what counts is
 * the CPU each byte costs.
 *
 * Other checksums ("blake3", "sha256" records) and copies that must run in
 * another network namespace use nbdcopy over several connections (holes
 * stay holes: nbdcopy reads the export's extent map), hashed WHILE it
 * copies. nbdcopy reports progress as "N/100" lines on an extra file
 * descriptor (--progress=3).
 *
 * Why hashing can follow nbdcopy: nbdcopy's threads take work in segments of
 * NBDCOPY_WORK_BYTES in ascending order (an atomic "next segment"), and its
 * progress counts finished segments (it moves in 128 MiB steps). A thread
 * keeps at most 64 requests of 256 KiB in flight, so it starts a new segment
 * while the last requests of its previous one may still be pending: at most
 * 2 * threads segments are unfinished, all among the last 2 * threads
 * handed out. With c segments finished and p > 0 pending, the lowest pending
 * one is at or after segment c + p - 2 * threads, so every byte below
 * `done - (2 * threads - 1) * NBDCOPY_WORK_BYTES` is final, and a sequential
 * hash of the destination can run up to there during the copy and finish
 * the tail after nbdcopy exits (exports/checksum.ts followingHasher). With
 * `threads` segments of slack, six copies at once on this 2-core box left a
 * straggler behind the frontier in every 2 GiB hydration: the hash missed
 * and the file was hashed again.
 *
 * Measured: sha256 after the copy made hydration 1.66-1.75x a raw nbdcopy;
 * following the copy hid some of that, but on 2 cores busy with the copy
 * sha256 (1.8 GB/s) fell behind: 1.5x. BLAKE3 (5.9 GB/s) costs less.
 * A mismatch is re-checked once with a plain hash of the finished file before
 * it is reported, so an error in this reasoning can cost time, not correctness.
 */
import { open, readFile, stat, statfs } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { Code, ProtoctlError, resourceExhausted } from "../../../common/errors.js";
import { spawnProcess } from "../../../common/exec.js";
import { type ChecksumAlgo, followingHasher, needBlake3, pieceRoot } from "../exports/checksum.js";
import { netnsPrefix } from "../exports/nbd-server.js";
import { parseNbdUri } from "../exports/nbd-uri.js";
import type { TlsFiles } from "../exports/types.js";
import { COPY_NICE, runCopyJob } from "./copy-pool.js";
import { type PieceCopyJob, pieceCount } from "./piece-copy.js";

export interface CopyOptions {
  /** nbd:// or nbds:// (nbdcopy finds its client certificates in the URI's tls-certificates=). */
  uri: string;
  /** The client's certificate, key and CA for an nbds:// source (the piece copy's TLS). */
  tls?: TlsFiles;
  dest: string;
  sizeBytes: number;
  connections: number;
  netns?: string;
  signal?: AbortSignal;
  progress?: (doneBytes: number, totalBytes: number) => void;
  /** Gives up when neither progress nor new bytes came for this long (default COPY_STALL_MS). */
  stallMs?: number;
}

export const COPY_STALL_MS = 10_000;

/** Parses the last complete "N/100" line of nbdcopy's progress stream (pure). */
export function parseProgress(text: string): number | undefined {
  const all = [...text.matchAll(/(\d+)\/100\n/g)];
  const last = all.at(-1);
  return last ? Number(last[1]) : undefined;
}

/**
 * libnbd 1.14 copy/multi-thread-copying.c THREAD_WORK_SIZE. Were it larger in another
 * version, a hash would mismatch and the finished file be hashed again: slower, not wrong.
 */
export const NBDCOPY_WORK_BYTES = 128 * 1024 * 1024;

/** nbdcopy's arguments (pure). Threads = connections, so the hash frontier knows the count. */
/**
 * nbdcopy's threads: its default (one per CPU) capped by the connections, said explicitly so the
 * hash frontier knows the count. More threads than CPUs was slower here (1.5 GB: 1.28 s with 2
 * threads on 2 CPUs, 1.70 s with 4).
 */
export function copyThreads(connections: number, cpus = availableParallelism()): number {
  return Math.max(1, Math.min(connections, cpus));
}

/** nbdcopy's arguments (pure). */
export function nbdcopyArgs(
  o: Pick<CopyOptions, "uri" | "dest" | "connections">,
  threads = copyThreads(o.connections),
): string[] {
  return [`--connections=${o.connections}`, `--threads=${threads}`, "--progress=3", o.uri, o.dest];
}

/** Highest offset below which every byte is final, given `done` bytes copied (pure). */
export function hashFrontier(done: number, size: number, threads: number): number {
  if (done >= size) return size;
  return Math.max(0, done - (2 * threads - 1) * NBDCOPY_WORK_BYTES);
}

/** Free bytes for an unprivileged-equivalent writer on the filesystem holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

const MiB = 1024 * 1024;

/**
 * Throws RESOURCE_EXHAUSTED unless `need` bytes are free where `path` lives,
 * beyond `promised` bytes already promised to other work there (hydrations
 * not written yet: their files are sparse until the copy lands).
 */
export async function requireRoom(path: string, need: number, what: string, promised = 0): Promise<void> {
  const free = await freeBytes(path);
  if (free - promised < need) {
    const mib = (n: number) => `${Math.ceil(n / MiB)} MiB`;
    const others = promised > 0 ? `, ${mib(promised)} of it promised to versions still hydrating` : "";
    throw resourceExhausted(
      `the pool is full: no room for ${what} (needs ${mib(need)}, ${mib(free)} free in ${path}${others})`,
      {
        reason: "NO_ROOM",
        subject: path,
        hint: "free space in the agent's state directory or grow it",
        metadata: { needBytes: String(need), freeBytes: String(free), promisedBytes: String(promised) },
      },
    );
  }
}

/**
 * Copies the export to `dest` and returns the checksum of the copy, hashed
 * while copying. ENOSPC → RESOURCE_EXHAUSTED; a lost source → UNAVAILABLE.
 * A "blake3-4m" image is copied by piece copiers in worker threads, which
 * hash what they receive (piece-copy.ts); other checksums, and copies that
 * must run in another network namespace, go through nbdcopy and a hash that
 * follows it.
 */
export async function copyAndHash(
  o: CopyOptions & { algo?: ChecksumAlgo },
): Promise<{ checksum: string; copyMs: number; tailMs: number }> {
  if (copiesInPieces(o.algo, o.netns)) {
    const t0 = performance.now();
    const checksum = await copyInPieces(o);
    const copyMs = performance.now() - t0;
    return { checksum, copyMs, tailMs: 0 };
  }
  const hasher = followingHasher(o.dest, o.sizeBytes, { algo: o.algo, growing: true });
  const t0 = performance.now();
  try {
    await copyExport({
      ...o,
      progress: (done, total) => {
        hasher.advance(hashFrontier(done, total, copyThreads(o.connections)));
        o.progress?.(done, total);
      },
    });
  } catch (err) {
    await hasher.abort();
    throw err;
  }
  const t1 = performance.now();
  const checksum = await hasher.finish();
  return { checksum, copyMs: t1 - t0, tailMs: performance.now() - t1 };
}

/** Copies the export to `dest`. ENOSPC → RESOURCE_EXHAUSTED; a lost source → UNAVAILABLE. */
export async function copyExport(o: CopyOptions): Promise<void> {
  // Background work: at nice 10 the copy yields the CPU to what users wait for (env starts and
  // execs on the just-attached version, other nodes' attaches) and takes the rest. Measured on
  // 6 nodes of one 2-core box: time-to-usable 1.26-1.30 s with it, 1.39-2.01 s without.
  const [cmd, ...pre] = ["nice", "-n", String(COPY_NICE), ...netnsPrefix(o.netns), "nbdcopy"];
  const child = spawnProcess(cmd!, [...pre, ...nbdcopyArgs(o)], {
    stdio: ["ignore", "ignore", "pipe", "pipe"],
    buffer: false,
    reject: false,
    cancelSignal: o.signal,
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4096);
  });
  let progressText = "";
  let lastSign = Date.now();
  const fd3 = child.stdio[3] as NodeJS.ReadableStream | undefined;
  fd3?.on("data", (d: Buffer) => {
    lastSign = Date.now();
    progressText = (progressText + d.toString()).slice(-64);
    const pct = parseProgress(progressText);
    if (pct !== undefined) o.progress?.(Math.floor((o.sizeBytes * pct) / 100), o.sizeBytes);
  });
  // A source that stops answering without closing its connections (a server hung on its way
  // out was seen) would hold nbdcopy forever: no new progress and no new bytes in the file for
  // stallMs, and the copy is given up as the source's failure.
  let stalled = false;
  let blocks = -1;
  const stallMs = o.stallMs ?? COPY_STALL_MS;
  const watch = setInterval(
    async () => {
      const b = (await stat(o.dest).catch(() => undefined))?.blocks ?? 0;
      if (b !== blocks) {
        blocks = b;
        lastSign = Date.now();
      } else if (Date.now() - lastSign > stallMs) {
        stalled = true;
        child.kill("SIGKILL");
      }
    },
    Math.min(1000, stallMs / 4),
  );
  const res = await child.finally(() => clearInterval(watch));
  if (stalled) throw copyFailure(o, "stalled", `nothing came for ${Math.round(stallMs / 1000)} s`);
  if (!res.failed) {
    o.progress?.(o.sizeBytes, o.sizeBytes);
    return;
  }
  if (res.isCanceled) throw copyFailure(o, "cancelled", "", res);
  if (/No space left on device|ENOSPC/i.test(stderr)) throw copyFailure(o, "no-room", "", stderr);
  throw copyFailure(o, "source", stderr.trim().split("\n").at(-1) ?? "", stderr);
}

/**
 * The error of a failed copy, the same for both copy paths: whose fault it was
 * (`kind`, as piece-copy.ts names it) decides the code, so a push re-attaches
 * for the source's failures and reports the target's.
 */
function copyFailure(o: CopyOptions, kind: string, detail: string, output?: unknown): ProtoctlError {
  const out = typeof output === "string" ? output : undefined;
  const cause = typeof output === "string" ? undefined : output;
  switch (kind) {
    case "cancelled":
      return new ProtoctlError(Code.CANCELLED, "hydration cancelled", { reason: "CANCELLED", cause });
    case "no-room":
      return resourceExhausted(`the pool is full: no room for the hydrated image ${o.dest}`, {
        reason: "NO_ROOM",
        subject: o.dest,
        output: out,
        hint: "free space in the agent's state directory or grow it",
      });
    case "stalled":
      return new ProtoctlError(Code.UNAVAILABLE, `copying the seed from ${o.uri} stalled: ${detail}`, {
        reason: "SOURCE_UNAVAILABLE",
        subject: o.uri,
        hint: "hydrate from another node holding the image",
      });
    case "source":
      return new ProtoctlError(Code.UNAVAILABLE, `copying the seed from ${o.uri} failed: ${detail}`, {
        reason: "SOURCE_UNAVAILABLE",
        subject: o.uri,
        output: out,
        hint: "hydrate from another node holding the image (switch the source first)",
      });
    default:
      return new ProtoctlError(Code.INTERNAL, `copying the seed from ${o.uri} failed: ${detail}`, {
        reason: "COPY_FAILED",
        subject: o.uri,
      });
  }
}

/** Whether a seed with this checksum is copied by piece copiers (else by nbdcopy). */
export function copiesInPieces(algo: ChecksumAlgo | undefined, netns: string | undefined): boolean {
  return algo === "blake3-4m" && !netns;
}

/** PEM contents of the client's TLS files, for an nbds:// source. */
async function clientTls(o: CopyOptions): Promise<PieceCopyJob["source"]["tls"]> {
  if (!o.uri.startsWith("nbds://")) return undefined;
  if (!o.tls) {
    throw new ProtoctlError(Code.FAILED_PRECONDITION, `no client certificates for ${o.uri}`, {
      reason: "NO_TLS_CREDENTIALS",
    });
  }
  const [ca, cert, key] = await Promise.all(
    [o.tls.caFile, o.tls.certFile, o.tls.keyFile].map((f) => readFile(f)),
  );
  return { ca: ca!, cert: cert!, key: key! };
}

/**
 * Copies a "blake3-4m" export with pooled worker threads (copy-pool.ts), one
 * NBD connection each, and returns the checksum of what they received.
 *
 * One connection per thread, as many threads as CPUs (at most `connections`):
 * on this 2-core box a 2 GiB base copied over TLS in 2.67-2.76 s with 2
 * connections and 2.90 s with 4 (plain: 1.59 s and 1.75 s); more requests in
 * flight per connection did not help.
 */
async function copyInPieces(o: CopyOptions): Promise<string> {
  needBlake3(); // FAILED_PRECONDITION here, not an error from inside a worker
  const u = parseNbdUri(o.uri);
  const source = { host: u.host, port: u.port, exportName: u.exportName, tls: await clientTls(o) };
  const fh = await open(o.dest, "w", 0o600);
  try {
    await fh.truncate(o.sizeBytes);
  } finally {
    await fh.close();
  }
  const threads = copyThreads(o.connections);
  const job: PieceCopyJob = {
    source,
    dest: o.dest,
    size: o.sizeBytes,
    connections: 1,
    next: new Int32Array(new SharedArrayBuffer(4)),
    digests: new Uint8Array(new SharedArrayBuffer(32 * pieceCount(o.sizeBytes))),
    stallMs: o.stallMs ?? COPY_STALL_MS,
  };
  // One failure stops the other workers: the copy is lost anyway.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  o.signal?.addEventListener("abort", onAbort);
  let done = 0;
  const onBytes = (n: number) => {
    done += n;
    o.progress?.(done, o.sizeBytes);
  };
  try {
    const ends = await Promise.all(
      Array.from({ length: threads }, () =>
        runCopyJob(job, onBytes, stop.signal).then((f) => {
          if (f) stop.abort();
          return f;
        }),
      ),
    );
    if (o.signal?.aborted) throw copyFailure(o, "cancelled", "");
    const failed = ends.find((f) => f && f.kind !== "cancelled");
    if (failed) throw copyFailure(o, failed.kind, failed.message);
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
  }
  return pieceRoot(job.digests);
}
