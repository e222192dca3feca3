/**
 * One attachment's record inside SeedAttachments, and the small pieces its
 * steps share: key rules, the sprout file's place, cleaning what a dead
 * attachment left, an NBD client adopted from a previous agent process.
 */
import { readdir, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument, ProtoctlError } from "../../../common/errors.js";
import { CommandError, run } from "../../../common/exec.js";
import { detachLoop, forgetBtrfsDevice, loopBackingFile } from "./loop.js";
import { isMountpoint, type NbdConnection, stopProxy, unmountFuse } from "./nbd-transport.js";
import type { AttachmentState, AttachOptions } from "./types.js";

export const DEFAULT_CONNECTIONS = 4;

export interface Entry {
  opts: AttachOptions;
  state: AttachmentState;
  dir: string;
  nbd?: NbdConnection;
  /** Sources used so far (names nbd-<n> directories). */
  sources: number;
  tlsDir?: string;
  ownMountpoint: boolean;
  hydrating?: Promise<AttachmentState>;
  /** The NBD client being closed after a switch made it unused. */
  dropping?: Promise<void>;
}

export function validateKey(key: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(key)) {
    throw invalidArgument(`invalid attachment key ${JSON.stringify(key)}`, { reason: "BAD_KEY" });
  }
}

/** An NBD client started by a previous agent process: closing it unmounts its FUSE file lazily. */
export function adoptedConnection(uri: string, dir: string, path: string): NbdConnection {
  let closed = false;
  return {
    kind: "nbdfuse",
    uri,
    path,
    get alive() {
      return !closed;
    },
    async close() {
      if (closed) return;
      closed = true;
      await unmountFuse(dir);
      await stopProxy(dir);
      await rmdir(dir).catch(() => undefined);
    },
  };
}

/** Removes what a dead attachment left: mounts, loop devices bound to its files, FUSE mounts, the dir. */
export async function cleanLeftovers(dir: string, s: AttachmentState, sproutFile: string): Promise<void> {
  if (await isMountpoint(s.mountpoint)) await run("umount", ["-l", s.mountpoint], { allowFailure: true });
  for (const dev of [s.sproutLoop, s.seedLoop]) {
    const b = await loopBackingFile(dev);
    if (b?.startsWith(`${dir}/`) || b === sproutFile) {
      await forgetBtrfsDevice(dev);
      await detachLoop(dev);
    }
  }
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    const p = join(dir, n);
    if (!/^nbd-\d+$/.test(n)) continue;
    if (await isMountpoint(p)) await run("fusermount3", ["-u", "-z", p], { allowFailure: true });
    await stopProxy(p);
  }
  if (await isMountpoint(join(dir, "mnt"))) return; // never delete below a live mount
  await rm(dir, { recursive: true, force: true });
  await rm(sproutFile, { force: true });
}

/** The sprout device's file: in sproutDir when given (a tmpfs), else in the attachment's dir. */
export function sproutFileOf(o: AttachOptions, dir: string): string {
  return o.sproutDir ? join(o.sproutDir, `${o.key}.sprout.img`) : join(dir, "sprout.img");
}

/** Room a new sprout needs at first (its superblocks and first chunks; it grows with env writes). */
export const SPROUT_START_BYTES = 64 * 1024 * 1024;

export function toError(err: unknown, message: string, subject: string): ProtoctlError {
  if (err instanceof CommandError) return err.toProtoctl(message, subject);
  return ProtoctlError.from(err);
}
