/**
 * Hydration copy: the whole export to a local file with nbdcopy over several
 * connections (holes stay holes: nbdcopy reads the export's extent map), then
 * sha256 of the copy. nbdcopy reports progress as "N/100" lines on an extra
 * file descriptor (--progress=3).
 */
import { statfs } from "node:fs/promises";
import { Code, ProtoctlError, resourceExhausted } from "../../../common/errors.js";
import { spawnProcess } from "../../../common/exec.js";
import { netnsPrefix } from "../exports/nbd-server.js";

export interface CopyOptions {
  uri: string;
  dest: string;
  sizeBytes: number;
  connections: number;
  netns?: string;
  signal?: AbortSignal;
  progress?: (doneBytes: number, totalBytes: number) => void;
}

/** Parses the last complete "N/100" line of nbdcopy's progress stream (pure). */
export function parseProgress(text: string): number | undefined {
  const all = [...text.matchAll(/(\d+)\/100\n/g)];
  const last = all.at(-1);
  return last ? Number(last[1]) : undefined;
}

/** nbdcopy's arguments (pure). */
export function nbdcopyArgs(o: Pick<CopyOptions, "uri" | "dest" | "connections">): string[] {
  return [`--connections=${o.connections}`, "--progress=3", o.uri, o.dest];
}

/** Free bytes for an unprivileged-equivalent writer on the filesystem holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** Throws RESOURCE_EXHAUSTED unless `need` bytes are free where `path` lives. */
export async function requireRoom(path: string, need: number, what: string): Promise<void> {
  const free = await freeBytes(path);
  if (free < need) {
    throw resourceExhausted(`no room for ${what}: needs ${need} bytes, ${free} free in ${path}`, {
      reason: "NO_ROOM",
      subject: path,
      hint: "free space in the agent's state directory or grow it",
      metadata: { needBytes: String(need), freeBytes: String(free) },
    });
  }
}

/** Copies the export to `dest`. ENOSPC → RESOURCE_EXHAUSTED; a lost source → UNAVAILABLE. */
export async function copyExport(o: CopyOptions): Promise<void> {
  const [cmd, ...pre] = [...netnsPrefix(o.netns), "nbdcopy"];
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
  const fd3 = child.stdio[3] as NodeJS.ReadableStream | undefined;
  fd3?.on("data", (d: Buffer) => {
    progressText = (progressText + d.toString()).slice(-64);
    const pct = parseProgress(progressText);
    if (pct !== undefined) o.progress?.(Math.floor((o.sizeBytes * pct) / 100), o.sizeBytes);
  });
  const res = await child;
  if (!res.failed) {
    o.progress?.(o.sizeBytes, o.sizeBytes);
    return;
  }
  if (res.isCanceled) {
    throw new ProtoctlError(Code.CANCELLED, "hydration cancelled", { reason: "CANCELLED", cause: res });
  }
  if (/No space left on device|ENOSPC/i.test(stderr)) {
    throw resourceExhausted(`no room for the hydrated image ${o.dest}`, {
      reason: "NO_ROOM",
      subject: o.dest,
      output: stderr,
      hint: "free space in the agent's state directory or grow it",
    });
  }
  throw new ProtoctlError(
    Code.UNAVAILABLE,
    `copying the seed from ${o.uri} failed: ${stderr.trim().split("\n").at(-1) ?? ""}`,
    {
      reason: "SOURCE_UNAVAILABLE",
      subject: o.uri,
      output: stderr,
      hint: "hydrate from another node holding the image (switch the source first)",
    },
  );
}
