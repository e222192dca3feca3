/**
 * Reading a log file as a stream, `tail -n N -f` style, in Node: the last N
 * lines, then (when following) whatever is appended, polled by size, until
 * the signal aborts or `done()` says the writer is gone and the file is drained.
 */
import { open, stat } from "node:fs/promises";

const CHUNK = 64 * 1024;

/** Byte offset where the last `lines` lines of `buf` start. */
export function tailOffset(buf: Buffer, lines: number): number {
  if (lines <= 0) return 0;
  let end = buf.length;
  if (end > 0 && buf[end - 1] === 0x0a) end--;
  let seen = 0;
  for (let i = end - 1; i >= 0; i--) {
    if (buf[i] === 0x0a && ++seen === lines) return i + 1;
  }
  return 0;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

export async function* followFile(
  path: string,
  opts: { follow: boolean; tailLines?: number; signal?: AbortSignal; done?: () => boolean; pollMs?: number },
): AsyncGenerator<Buffer> {
  let pos = 0;
  if (opts.tailLines && opts.tailLines > 0) {
    // look back far enough for N lines of ordinary length, then cut exactly
    const size = await fileSize(path);
    const from = Math.max(0, size - opts.tailLines * 512 - CHUNK);
    const head = await readRange(path, from, size);
    pos = from + tailOffset(head, opts.tailLines);
  }
  for (;;) {
    if (opts.signal?.aborted) return;
    const size = await fileSize(path);
    if (size < pos) pos = 0; // truncated: start over
    while (pos < size) {
      const buf = await readRange(path, pos, Math.min(size, pos + CHUNK));
      if (buf.length === 0) break;
      pos += buf.length;
      yield buf;
    }
    if (!opts.follow) return;
    // the writer's gone: one last read caught everything it wrote
    const finished = opts.done?.() ?? false;
    if (finished && (await fileSize(path)) <= pos) return;
    await sleep(opts.pollMs ?? 200, opts.signal);
  }
}

async function readRange(path: string, from: number, to: number): Promise<Buffer> {
  if (to <= from) return Buffer.alloc(0);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, "r");
    const buf = Buffer.alloc(to - from);
    const { bytesRead } = await fh.read(buf, 0, buf.length, from);
    return buf.subarray(0, bytesRead);
  } catch {
    return Buffer.alloc(0);
  } finally {
    await fh?.close();
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
