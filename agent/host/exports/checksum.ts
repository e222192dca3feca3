/**
 * Seed image checksums, written "ALGO:HEX" so a record says how it was made.
 *
 * New images use BLAKE3 (the reference Rust code with AVX2, as built by
 * @napi-rs/blake-hash): 5.9 GB/s on one core here against 1.8 GB/s for
 * OpenSSL's sha256 with SHA-NI. Hydration hashes every byte it copies on a
 * 2-core box already busy with the copy, so the hash's cost is most of what
 * hydration adds to a raw nbdcopy. sha256 stays available for a record that
 * names it, and is what a host without the BLAKE3 module publishes with.
 *
 * The module is the package's linux-x64-gnu build, an optional dependency
 * loaded directly: the registry these hosts use serves no other platform's
 * build, so the wrapper package (which lists them all) cannot be locked.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { createRequire } from "node:module";
import { failedPrecondition, invalidArgument } from "../../../common/errors.js";

export type ChecksumAlgo = "blake3" | "sha256";

interface Blake3Module {
  Blake3Hasher: new () => { update(input: Buffer): unknown; digest(format: "hex"): string };
}

const blake3Module: Blake3Module | undefined = (() => {
  try {
    return createRequire(import.meta.url)("@napi-rs/blake-hash-linux-x64-gnu") as Blake3Module;
  } catch {
    return undefined;
  }
})();

/** What new seed images are hashed with: BLAKE3 where the module loads. */
export const CHECKSUM_ALGO: ChecksumAlgo = blake3Module ? "blake3" : "sha256";

export interface Hasher {
  update(data: Uint8Array): void;
  /** "ALGO:HEX". */
  digest(): string;
}

/** A streaming hasher for `algo`. */
export function newHasher(algo: ChecksumAlgo = CHECKSUM_ALGO): Hasher {
  if (algo === "blake3") {
    if (!blake3Module) {
      throw failedPrecondition("this host cannot compute BLAKE3 (no @napi-rs/blake-hash-linux-x64-gnu)", {
        reason: "NO_BLAKE3",
        hint: "run the agent on linux x64 (glibc) with its optional dependencies installed",
      });
    }
    const h = new blake3Module.Blake3Hasher();
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

/** The algorithm a recorded checksum ("ALGO:HEX") was made with. */
export function checksumAlgo(checksum: string): ChecksumAlgo {
  const m = /^(blake3|sha256):[0-9a-f]{64}$/.exec(checksum);
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

const CHUNK = 4 << 20;

/** The checksum ("ALGO:HEX") of the file's bytes and its size. */
export async function checksumFile(
  path: string,
  opts: ChecksumOptions = {},
): Promise<{ checksum: string; sizeBytes: number }> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const hash = newHasher(opts.algo);
    // Two buffers: read the next chunk while hashing the current one.
    const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let pos = 0;
    let i = 0;
    let lastReport = 0;
    let pending = size > 0 ? fh.read(bufs[0]!, 0, Math.min(CHUNK, size), 0) : undefined;
    while (pending) {
      opts.signal?.throwIfAborted();
      const { bytesRead } = await pending;
      if (bytesRead === 0) throw new Error(`${path}: file shrank while hashing (at ${pos} of ${size})`);
      const cur = bufs[i]!;
      pos += bytesRead;
      i ^= 1;
      pending = pos < size ? fh.read(bufs[i]!, 0, Math.min(CHUNK, size - pos), pos) : undefined;
      hash.update(cur.subarray(0, bytesRead));
      if (opts.progress && pos - lastReport >= 64 << 20) {
        lastReport = pos;
        opts.progress(pos, size);
      }
    }
    opts.progress?.(size, size);
    return { checksum: hash.digest(), sizeBytes: size };
  } finally {
    await fh.close();
  }
}
