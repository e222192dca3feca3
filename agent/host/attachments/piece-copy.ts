/**
 * The hydration copy as 4 MiB pieces (the pieces of a "blake3-4m" checksum,
 * exports/checksum.ts): each piece is read over NBD into one buffer, hashed
 * there, and written to its place in the destination file, so every byte is
 * received, hashed and written once. Runs in a worker thread
 * (copy-worker.ts); several workers take pieces from one shared counter and
 * fill one shared digest table.
 *
 * Holes: the export's allocation map (NBD block status, "base:allocation")
 * is read first; ranges the server reports as holes or zeros are neither read
 * nor written (the destination is created sparse at full size), and hash as
 * zeros. nbdcopy does the same, so the raw reference moves the same bytes.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { PIECE_BYTES, pieceDigest } from "../exports/blake3.js";
import { NbdClient, type NbdClientOptions, NbdError, STATE_HOLE, STATE_ZERO } from "./nbd-client.js";

export interface PieceCopyJob {
  source: NbdClientOptions;
  /** Existing file of `size` bytes (sparse), written in place. */
  dest: string;
  size: number;
  /** NBD connections this copier opens. */
  connections: number;
  /** Next piece to take, shared by all copiers (Atomics.add on element 0). */
  next: Int32Array;
  /** 32 bytes per piece, filled at piece index · 32 (shared between copiers). */
  digests: Uint8Array;
  /** Gives up when requests are pending and nothing arrived for this long. */
  stallMs: number;
  /** Pieces in flight per connection. */
  depth?: number;
}

/** A copy that failed: `kind` says whose fault it was. */
export class PieceCopyError extends Error {
  constructor(
    message: string,
    readonly kind: "source" | "stalled" | "no-room" | "local",
  ) {
    super(message);
    this.name = "PieceCopyError";
  }
}

/** Number of pieces of an image (an empty image has one, empty). */
export function pieceCount(size: number): number {
  return Math.max(1, Math.ceil(size / PIECE_BYTES));
}

/** Data ranges [start, end) of the image, from block status (pure merge of extents). */
export function dataRanges(
  extents: Array<{ length: number; flags: number }>,
  from = 0,
): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let pos = from;
  for (const e of extents) {
    const isData = (e.flags & (STATE_HOLE | STATE_ZERO)) === 0;
    if (isData) {
      const last = out.at(-1);
      if (last && last[1] === pos) last[1] = pos + e.length;
      else out.push([pos, pos + e.length]);
    }
    pos += e.length;
  }
  return out;
}

/** The parts of `ranges` inside [start, end), clipped (ranges sorted, pure). */
export function rangesWithin(
  ranges: Array<[number, number]>,
  start: number,
  end: number,
): Array<[number, number]> {
  // Binary search for the first range ending after start.
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid]![1] <= start) lo = mid + 1;
    else hi = mid;
  }
  const out: Array<[number, number]> = [];
  for (let i = lo; i < ranges.length && ranges[i]![0] < end; i++) {
    out.push([Math.max(start, ranges[i]![0]), Math.min(end, ranges[i]![1])]);
  }
  return out;
}

const MAP_STEP = 1 << 30;

/**
 * Largest read request: a piece's data goes as several reads. The server
 * allocates and clears a buffer the size of each request; at 4 MiB that cost
 * nbdkit 270-300 ms of CPU per 435 MB image over TLS, at 1 MiB 210-230 (as
 * for nbdcopy's 256 KiB requests), and on a box whose cores the copy keeps
 * busy the server's CPU is the copy's time: hydration (bench/propagate, TLS)
 * went from 1.43-1.50x a raw nbdcopy to 1.33-1.35x for the small base and
 * from 1.30-1.44x to 1.24-1.29x for the large. 256 KiB requests cost as much
 * server CPU as 1 MiB and more of ours (1.42-1.44x).
 */
const READ_BYTES = 1 << 20;

async function allocationMap(c: NbdClient, size: number): Promise<Array<[number, number]>> {
  if (!c.hasBlockStatus) return [[0, size]];
  const extents: Array<{ length: number; flags: number }> = [];
  let pos = 0;
  while (pos < size) {
    const got = await c.blockStatus(pos, Math.min(MAP_STEP, size - pos));
    let n = 0;
    for (const e of got) {
      const len = Math.min(e.length, size - pos - n);
      if (len <= 0) break;
      extents.push({ length: len, flags: e.flags });
      n += len;
    }
    if (n === 0) throw new NbdError(`block status made no progress at ${pos}`);
    pos += n;
  }
  return dataRanges(extents);
}

const zeroDigests = new Map<number, Buffer>();
function zeroDigest(len: number): Buffer {
  let d = zeroDigests.get(len);
  if (!d) {
    d = pieceDigest(Buffer.alloc(len));
    zeroDigests.set(len, d);
  }
  return d;
}

/** Copies this copier's pieces; `onBytes` gets each finished piece's length. */
export async function copyPieces(job: PieceCopyJob, onBytes: (n: number) => void): Promise<void> {
  const clients: NbdClient[] = [];
  let fd: number | undefined;
  let watch: NodeJS.Timeout | undefined;
  let stalled = false;
  try {
    try {
      const first = await NbdClient.connect(job.source);
      clients.push(first);
      const rest = await Promise.all(
        Array.from({ length: job.connections - 1 }, () => NbdClient.connect(job.source)),
      );
      clients.push(...rest);
    } catch (err) {
      throw new PieceCopyError(`cannot connect to the source: ${(err as Error).message}`, "source");
    }
    if (clients[0]!.size !== job.size) {
      throw new PieceCopyError(`the source serves ${clients[0]!.size} bytes, expected ${job.size}`, "source");
    }
    fd = openSync(job.dest, "r+");
    const stallMs = job.stallMs;
    watch = setInterval(
      () => {
        const busy = clients.filter((c) => c.inFlight > 0);
        if (busy.length && performance.now() - Math.max(...busy.map((c) => c.lastRxAt)) > stallMs) {
          stalled = true;
          for (const c of clients) c.destroy();
        }
      },
      Math.min(1000, stallMs / 4),
    );
    const map = await allocationMap(clients[0]!, job.size);
    const total = pieceCount(job.size);
    let failure: unknown;
    const free: Buffer[] = [];
    const piece = async (c: NbdClient, i: number) => {
      const start = i * PIECE_BYTES;
      const len = Math.min(PIECE_BYTES, job.size - start);
      const data = rangesWithin(map, start, start + len);
      if (data.length === 0) {
        job.digests.set(zeroDigest(len), i * 32);
        onBytes(len);
        return;
      }
      const buf = free.pop() ?? Buffer.allocUnsafe(PIECE_BYTES);
      try {
        let pos = start;
        const reads: Promise<void>[] = [];
        for (const [a, b] of data) {
          if (a > pos) buf.fill(0, pos - start, a - start);
          for (let o = a; o < b; o += READ_BYTES) {
            const n = Math.min(READ_BYTES, b - o);
            reads.push(c.read(o, n, buf, o - start));
          }
          pos = b;
        }
        if (pos < start + len) buf.fill(0, pos - start, len);
        await Promise.all(reads);
        if (failure) return;
        job.digests.set(pieceDigest(buf.subarray(0, len)), i * 32);
        for (const [a, b] of data) writeAll(fd!, buf, a - start, b - a, a);
        onBytes(len);
      } finally {
        free.push(buf);
      }
    };
    // Every task settles before the file is closed: a read that lands after a failure elsewhere
    // must not write to a descriptor that is closed, or reused by then.
    const depth = job.depth ?? 2;
    await Promise.all(
      clients.flatMap((c) =>
        Array.from({ length: depth }, async () => {
          try {
            for (;;) {
              if (failure) return;
              const i = Atomics.add(job.next, 0, 1);
              if (i >= total) return;
              await piece(c, i);
            }
          } catch (err) {
            failure ??= err;
            for (const x of clients) x.destroy();
          }
        }),
      ),
    );
    if (failure) throw failure;
  } catch (err) {
    if (err instanceof PieceCopyError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOSPC") throw new PieceCopyError(`no room for ${job.dest}`, "no-room");
    if (stalled) throw new PieceCopyError(`nothing came for ${Math.round(job.stallMs / 1000)} s`, "stalled");
    if (err instanceof NbdError || code === "ECONNRESET" || code === "EPIPE") {
      throw new PieceCopyError((err as Error).message, "source");
    }
    throw new PieceCopyError((err as Error).message, "local");
  } finally {
    if (watch) clearInterval(watch);
    for (const c of clients) c.close();
    if (fd !== undefined) closeSync(fd);
  }
}

function writeAll(fd: number, buf: Buffer, off: number, len: number, pos: number): void {
  while (len > 0) {
    const n = writeSync(fd, buf, off, len, pos);
    off += n;
    len -= n;
    pos += n;
  }
}
