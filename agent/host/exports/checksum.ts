/**
 * Seed image checksums, written "ALGO:HEX" so a record says how it was made.
 *
 * New images use "blake3-4m": the BLAKE3 digests (32 bytes) of the image's
 * consecutive 4 MiB pieces (the last one shorter), concatenated and hashed
 * once more with BLAKE3. Any change to any byte changes the root as with a
 * flat hash, but pieces can be hashed in any order and by several threads as
 * they arrive: hydration hashes each piece in the buffer it was received in
 * (attachments/piece-copy.ts), with no second pass over the file.
 *
 * BLAKE3 (the reference Rust code with AVX2, as built by @napi-rs/blake-hash)
 * runs at 5.9 GB/s on one core here against 1.8 GB/s for OpenSSL's sha256
 * with SHA-NI. "blake3" (flat) and "sha256" stay readable for records that
 * name them; a host without the BLAKE3 module publishes with sha256.
 * The module is loaded in blake3.ts.
 */
import { createHash } from "node:crypto";
import { open, stat } from "node:fs/promises";
import { failedPrecondition, invalidArgument } from "../../../common/errors.js";
import { type Blake3Module, blake3Native, PIECE_BYTES, pieceDigest } from "./blake3.js";

export { PIECE_BYTES, pieceDigest };

export type ChecksumAlgo = "blake3-4m" | "blake3" | "sha256";

/** What new seed images are hashed with: BLAKE3 pieces where the module loads. */
export const CHECKSUM_ALGO: ChecksumAlgo = blake3Native ? "blake3-4m" : "sha256";

/** The BLAKE3 module, or FAILED_PRECONDITION on a host without it. */
export function needBlake3(): Blake3Module {
  if (!blake3Native) {
    throw failedPrecondition("this host cannot compute BLAKE3 (no @napi-rs/blake-hash-linux-x64-gnu)", {
      reason: "NO_BLAKE3",
      hint: "run the agent on linux x64 (glibc) with its optional dependencies installed",
    });
  }
  return blake3Native;
}

/** "blake3-4m:HEX" from the pieces' digests, in order (32 bytes each). */
export function pieceRoot(digests: Uint8Array): string {
  return `blake3-4m:${pieceDigest(digests).toString("hex")}`;
}

export interface Hasher {
  update(data: Uint8Array): void;
  /** "ALGO:HEX". */
  digest(): string;
}

/** A streaming hasher for `algo`. */
export function newHasher(algo: ChecksumAlgo = CHECKSUM_ALGO): Hasher {
  if (algo === "blake3-4m") return pieceHasher();
  if (algo === "blake3") {
    const h = new (needBlake3().Blake3Hasher)();
    return {
      update: (d) => void h.update(Buffer.from(d.buffer, d.byteOffset, d.byteLength)),
      digest: () => `blake3:${h.digest("hex")}`,
    };
  }
  const h = createHash("sha256");
  return {
    update: (d) => void h.update(d),
    digest: () => `sha256:${h.digest("hex")}`,
  };
}

/** "blake3-4m" over a stream: pieces cut at PIECE_BYTES boundaries, each digested as it fills. */
function pieceHasher(): Hasher {
  const digests: Buffer[] = [];
  const cur = new (needBlake3().Blake3Hasher)();
  let fill = 0;
  let any = false;
  return {
    update(d) {
      let b = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
      while (b.length) {
        any = true;
        const n = Math.min(PIECE_BYTES - fill, b.length);
        cur.update(b.subarray(0, n));
        fill += n;
        b = b.subarray(n);
        if (fill === PIECE_BYTES) {
          digests.push(cur.digestBuffer());
          cur.reset();
          fill = 0;
        }
      }
    },
    digest() {
      // An empty file has one empty piece, so the root never hashes nothing.
      if (fill || !any) digests.push(cur.digestBuffer());
      return pieceRoot(Buffer.concat(digests));
    },
  };
}

/** The algorithm a recorded checksum ("ALGO:HEX") was made with. */
export function checksumAlgo(checksum: string): ChecksumAlgo {
  const m = /^(blake3-4m|blake3|sha256):[0-9a-f]{64}$/.exec(checksum);
  if (!m)
    throw invalidArgument(`not a seed checksum: ${JSON.stringify(checksum)}`, { reason: "BAD_CHECKSUM" });
  return m[1] as ChecksumAlgo;
}

export interface ChecksumOptions {
  algo?: ChecksumAlgo;
  signal?: AbortSignal;
  /** Called about every 64 MiB and at the end. */
  progress?: (doneBytes: number, totalBytes: number) => void;
}

/**
 * Read size. The two read buffers outlive the hash until V8's next major GC, which an idle
 * agent may not run for minutes: at 4 MiB each they kept 8 MiB resident after every publish
 * at seal (bench env-create's RSS with 100 envs jumped from ~73 to ~83 MB whenever the
 * publish landed just before the sample). 1 MiB hashes 512 MiB as fast as 4 MiB here
 * (~120 ms); 512 KiB is ~35 % slower. The hasher is streaming, so the checksum is the same.
 */
const CHUNK = 1 << 20;
const REPORT_EVERY = 64 << 20;

/**
 * A sequential hash of `path`'s first `size` bytes that reads only below a
 * frontier raised by `advance`; `finish` hashes the rest and returns the
 * checksum ("ALGO:HEX"). Two buffers: the next read runs in libuv's pool
 * while the main thread hashes the current one. With `growing` the file may
 * still be shorter than `size` (a copy in progress): missing bytes are holes
 * and hash as zeros; otherwise a short file is an error.
 */
export function followingHasher(
  path: string,
  size: number,
  opts: ChecksumOptions & { growing?: boolean } = {},
) {
  const hash = newHasher(opts.algo);
  const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
  let pos = 0;
  let frontier = 0;
  let lastReport = 0;
  let wake: (() => void) | undefined;
  let stopped = false;
  let failure: unknown;
  const loop = (async () => {
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    let readPos = 0;
    let i = 0;
    let inflight: Promise<{ b: Buffer; want: number }> | undefined;
    const issue = async () => {
      fh ??= await open(path, "r");
      const b = bufs[i]!;
      i ^= 1;
      const want = Math.min(b.length, frontier - readPos);
      const at = readPos;
      readPos += want;
      inflight = fh.read(b, 0, want, at).then(({ bytesRead }) => {
        if (bytesRead < want) {
          if (!opts.growing)
            throw new Error(`${path}: file shrank while hashing (at ${at + bytesRead} of ${size})`);
          b.fill(0, bytesRead, want);
        }
        return { b, want };
      });
    };
    try {
      while (pos < size && !stopped) {
        opts.signal?.throwIfAborted();
        if (!inflight) {
          if (readPos >= frontier) {
            await new Promise<void>((r) => {
              wake = r;
            });
            continue;
          }
          await issue();
        }
        const cur = await inflight!;
        inflight = undefined;
        if (readPos < frontier) await issue();
        hash.update(cur.b.subarray(0, cur.want));
        pos += cur.want;
        if (opts.progress && pos - lastReport >= REPORT_EVERY) {
          lastReport = pos;
          opts.progress(pos, size);
        }
      }
    } catch (err) {
      failure = err;
    } finally {
      await inflight?.catch(() => undefined);
      await fh?.close();
    }
  })();
  return {
    get hashedBytes() {
      return pos;
    },
    advance(to: number) {
      frontier = Math.min(size, Math.max(frontier, to));
      wake?.();
    },
    async finish(): Promise<string> {
      this.advance(size);
      await loop;
      if (failure) throw failure;
      opts.progress?.(size, size);
      return hash.digest();
    },
    async abort(): Promise<void> {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}

/** The checksum ("ALGO:HEX") of the file's bytes and its size. */
export async function checksumFile(
  path: string,
  opts: ChecksumOptions = {},
): Promise<{ checksum: string; sizeBytes: number }> {
  const size = (await stat(path)).size;
  const checksum = await followingHasher(path, size, opts).finish();
  return { checksum, sizeBytes: size };
}
