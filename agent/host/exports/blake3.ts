/**
 * The BLAKE3 module and the piece digest, with no other imports: the
 * hydration copy's worker threads load this, and every module they load is
 * start-up time (common/errors.ts alone pulls in the generated protobuf
 * code: about 40 ms per worker).
 *
 * The module is @napi-rs/blake-hash's linux-x64-gnu build, an optional
 * dependency loaded directly: the registry these hosts use serves no other
 * platform's build, so the wrapper package (which lists them all) cannot be
 * locked.
 */
import { createRequire } from "node:module";

export interface Blake3Module {
  Blake3Hasher: new () => {
    update(input: Buffer): unknown;
    digest(format: "hex"): string;
    digestBuffer(): Buffer;
    reset(): void;
  };
  blake3(input: Buffer): Buffer;
}

export const blake3Native: Blake3Module | undefined = (() => {
  try {
    return createRequire(import.meta.url)("@napi-rs/blake-hash-linux-x64-gnu") as Blake3Module;
  } catch {
    return undefined;
  }
})();

/** The piece size of "blake3-4m" checksums (checksum.ts). */
export const PIECE_BYTES = 4 << 20;

/** BLAKE3 of one piece (32 bytes). */
export function pieceDigest(piece: Uint8Array): Buffer {
  if (!blake3Native)
    throw new Error("this host cannot compute BLAKE3 (no @napi-rs/blake-hash-linux-x64-gnu)");
  return blake3Native.blake3(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
}
