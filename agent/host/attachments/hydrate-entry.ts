/**
 * Copies an attachment's export to a local file, checks it, and moves the seed
 * loop onto it (LOOP_CHANGE_FD): the "hydrate" step of seed-attachments.ts.
 * On failure the attachment stays on NBD (phase "attached") and the copy is gone.
 */
import { randomBytes } from "node:crypto";
import { chmod, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Code, failedPrecondition, ProtoctlError } from "../../../common/errors.js";
import { checksumAlgo, checksumFile } from "../exports/checksum.js";
import { withClientTls } from "../exports/nbd-uri.js";
import { DEFAULT_CONNECTIONS, type Entry, toError } from "./attachment-entry.js";
import { copiesInPieces, copyAndHash, requireRoom } from "./hydrate.js";
import { type LoopSwitch, prepareLoopSwitch } from "./loop.js";
import type { AttachmentState, HydrateOptions } from "./types.js";

/** `promised`: room in the state dir promised to other attachments' images, not written yet. */
export async function hydrateEntry(
  e: Entry,
  key: string,
  opts: HydrateOptions,
  promised = 0,
): Promise<AttachmentState> {
  if (e.state.phase === "local") return { ...e.state };
  if (!e.nbd) throw failedPrecondition(`${key} has no source to hydrate from`, { reason: "NO_SOURCE" });
  const size = e.state.sizeBytes;
  const part = join(e.dir, `seed.img.${randomBytes(3).toString("hex")}.part`);
  const final = join(e.dir, "seed.img");
  let sw: Promise<LoopSwitch> | undefined;
  try {
    const algo = checksumAlgo(e.opts.seed.checksum);
    await requireRoom(e.dir, size, `the hydrated image of ${key}`, promised);
    e.state.phase = "hydrating";
    e.state.message = "";
    e.state.hydratedBytes = 0;
    // The switch's helper (an interpreter's start, ~25 ms) starts with the copy and waits.
    sw = prepareLoopSwitch(e.state.seedLoop, e.state.mountpoint);
    sw.catch(() => undefined);
    const t0 = performance.now();
    const copied = await copyAndHash({
      uri: withClientTls(e.state.uri, e.tlsDir),
      tls: e.opts.tls,
      dest: part,
      sizeBytes: size,
      connections: e.opts.connections ?? DEFAULT_CONNECTIONS,
      netns: e.opts.netns,
      signal: opts.signal,
      algo,
      progress: (done, total) => {
        e.state.hydratedBytes = done;
        opts.progress?.(done, total);
      },
    });
    const t1 = t0 + copied.copyMs;
    let sum = { checksum: copied.checksum, sizeBytes: (await stat(part)).size };
    // Before reporting corruption, hash nbdcopy's finished file once more (see hydrate.ts). The
    // piece copy hashed the very buffers it wrote: its mismatch is the source's.
    const rehashed = sum.checksum !== e.opts.seed.checksum && !copiesInPieces(algo, e.opts.netns);
    if (rehashed) sum = await checksumFile(part, { algo, signal: opts.signal });
    const t2 = performance.now();
    if (sum.sizeBytes !== size || sum.checksum !== e.opts.seed.checksum) {
      throw new ProtoctlError(
        Code.DATA_LOSS,
        `the seed copied from ${e.state.uri} does not match its checksum (${sum.checksum}, ${sum.sizeBytes} bytes; expected ${e.opts.seed.checksum}, ${size} bytes)`,
        {
          reason: "CHECKSUM_MISMATCH",
          subject: `attachment/${key}`,
          hint: "the source serves a different or corrupted image: hydrate from another source; the attachment stays on NBD",
        },
      );
    }
    await chmod(part, 0o444);
    await rename(part, final);
    const go = await (sw ?? prepareLoopSwitch(e.state.seedLoop, e.state.mountpoint));
    sw = undefined;
    await go.go(final);
    e.state.seedBacking = final;
    const hydration = {
      copyMs: t1 - t0,
      verifyMs: t2 - t1,
      switchMs: performance.now() - t2,
      tailMs: copied.tailMs,
      rehashed,
    };
    // Nothing reads through the NBD client any more: it closes in the background (about
    // 50 ms of fusermount, nbdfuse and TLS proxy exits), and detach waits for it.
    const nbd = e.nbd;
    e.nbd = undefined;
    e.dropping = nbd.close().catch(() => undefined);
    Object.assign(e.state, {
      phase: "local",
      transport: "local",
      uri: "",
      hydratedBytes: size,
      message: "",
      hydration,
    });
    return { ...e.state };
  } catch (err) {
    await sw?.then((s) => s.cancel()).catch(() => undefined);
    await rm(part, { force: true });
    if (e.state.seedBacking !== final) await rm(final, { force: true });
    const pe = toError(err, `hydrating ${key} failed`, `attachment/${key}`);
    if (e.state.phase === "hydrating") e.state.phase = "attached";
    e.state.hydratedBytes = 0;
    e.state.message = pe.message;
    throw pe;
  }
}
