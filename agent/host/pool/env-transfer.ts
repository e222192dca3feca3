/**
 * Env move, pool side: a stopped env's writable part leaves one pool as a
 * `btrfs send` stream and enters another through `btrfs receive`.
 *
 * What moves: a plain env's root (a snapshot of base@N: sent with `-p` the
 * base root when the target holds base@N, so only the env's own writes
 * travel), or a layered env's `vol` (overlay upper + work dirs; a full
 * stream, the layers are rebuilt from their recipes on the target).
 *
 * The stream is untrusted (the sending node may be compromised): it is
 * received into a fresh scratch dir, which must then hold exactly the one
 * subvolume the header names; an incremental one must descend from this
 * node's base@N root. The received (read-only) subvolume is then snapshotted
 * writable and dropped, so the adopted root has its own identity. The env
 * dir is marked `received` until CreateEnv adopts it (env-roots.ts).
 */
import { mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { alreadyExists, invalidArgument } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import type { KeyedLock } from "../../../common/keyed-lock.js";
import { validateName } from "../../../common/names.js";
import { Revert } from "../../../common/revert.js";
import { receiveSubvolume, sendSubvolume } from "../deltas/btrfs-stream.js";
import type { SendStream } from "../deltas/types.js";
import type { BaseStore } from "./bases.js";
import { deleteSubvolume, isSubvolume, snapshotSubvolume } from "./btrfs.js";
import type { EnvRecord, EnvRootStore } from "./env-roots.js";
import { exists, writeJsonAtomic } from "./files.js";
import { type PoolLayout, tmpName } from "./layout.js";

export type EnvPart = "root" | "vol";

export interface EnvSend extends SendStream {
  base: string;
  version: number;
  /** base@N sent as the parent (0: a full stream). */
  parentVersion: number;
  part: EnvPart;
}

export interface EnvReceiveHeader {
  name: string;
  base: string;
  version: number;
  parentVersion: number;
  part: string;
}

export class EnvTransfer {
  constructor(
    private readonly layout: PoolLayout,
    private readonly bases: BaseStore,
    private readonly envs: EnvRootStore,
    private readonly locks: KeyedLock,
  ) {}

  /** Streams env `name`'s writable part; the caller checks it is stopped. */
  async send(name: string, withParent: boolean): Promise<EnvSend> {
    const rec = await this.envs.requireRecord(name);
    const part: EnvPart = rec.lowers.length > 0 ? "vol" : "root";
    const src = part === "vol" ? join(this.layout.envDir(name), "vol") : this.envs.rootOf(rec);
    // A read-only snapshot beside the source (same filesystem), under a temp name the orphan sweep knows.
    const scratch =
      part === "root" && rec.rootDir ? join(dirname(src), tmpName()) : join(this.layout.env, tmpName());
    await mkdir(scratch);
    const snap = join(scratch, part);
    const drop = async () => {
      await deleteSubvolume(snap);
      await rmdir(scratch).catch(() => undefined);
    };
    try {
      await snapshotSubvolume(src, snap, { readonly: true });
      const parent =
        part === "root" && withParent ? (await this.bases.rootOf(rec.base, rec.version)).root : undefined;
      const s = sendSubvolume({ subvolume: snap, parent });
      const done = s.done.finally(drop);
      done.catch(() => undefined);
      return {
        ...s,
        done,
        base: rec.base,
        version: rec.version,
        parentVersion: parent ? rec.version : 0,
        part,
      };
    } catch (err) {
      await drop();
      throw err;
    }
  }

  /** Receives an env's part into `@env/NAME`, marked received until CreateEnv adopts it. */
  async receive(h: EnvReceiveHeader, stream: Readable): Promise<void> {
    validateName("env", h.name);
    validateName("base", h.base);
    if (h.part !== "root" && h.part !== "vol") {
      throw invalidArgument(`env stream carries "${h.part}", not root or vol`, { reason: "STREAM_REJECTED" });
    }
    if (h.part === "vol" && h.parentVersion) {
      throw invalidArgument("a layered env's vol has no parent", { reason: "STREAM_REJECTED" });
    }
    const { meta, root: baseRoot } = await this.bases.rootOf(h.base, h.version);
    const final = this.layout.envDir(h.name);
    // a copy an interrupted move left here, never adopted: this stream replaces it
    if ((await this.envs.record(h.name))?.received) await this.envs.remove(h.name);
    await this.locks.run(`env/${h.name}`, () =>
      Revert.run(async (r) => {
        if (await exists(final)) {
          throw alreadyExists(`env ${h.name} already has a root on this node`, {
            reason: "ENV_EXISTS",
            subject: `env/${h.name}`,
          });
        }
        const dir = join(this.layout.env, tmpName());
        const recv = join(dir, "recv");
        await mkdir(recv, { recursive: true });
        r.add(() => dropScratch(dir));
        const got = await receiveSubvolume({ dir: recv, stream });
        const received = join(recv, h.part);
        const entries = await readdir(recv);
        if (entries.length !== 1 || got.name !== h.part || !(await isSubvolume(received))) {
          throw invalidArgument(
            `env stream for ${h.name} made ${entries.join(", ") || "nothing"}, not one subvolume ${h.part}`,
            { reason: "STREAM_REJECTED", subject: `env/${h.name}` },
          );
        }
        if (h.parentVersion) {
          const [mine, theirs] = await Promise.all([
            subvolumeUuid(baseRoot, "UUID"),
            subvolumeUuid(received, "Parent UUID"),
          ]);
          if (!mine || mine !== theirs) {
            throw invalidArgument(
              `env stream for ${h.name} does not descend from ${meta.base}@${meta.version}`,
              {
                reason: "STREAM_REJECTED",
                subject: `env/${h.name}`,
              },
            );
          }
        }
        await snapshotSubvolume(received, join(dir, h.part));
        await deleteSubvolume(received);
        await rmdir(recv);
        if (h.part === "vol") await mkdir(join(dir, "root"));
        const rec: EnvRecord = {
          name: h.name,
          base: meta.base,
          version: meta.version,
          layers: [],
          lowers: [],
          createdMs: Date.now(),
          received: true,
        };
        await writeJsonAtomic(join(dir, "meta.json"), rec);
        await rename(dir, final);
      }),
    );
  }
}

/** Deletes every subvolume a (possibly hostile) stream left in `dir`, then the dir. */
async function dropScratch(dir: string): Promise<void> {
  for (const sub of [join(dir, "recv"), dir]) {
    for (const e of await readdir(sub).catch(() => [] as string[])) {
      if (await isSubvolume(join(sub, e))) await deleteSubvolume(join(sub, e));
    }
  }
  await rm(dir, { recursive: true, force: true });
}

async function subvolumeUuid(path: string, field: "UUID" | "Parent UUID"): Promise<string | undefined> {
  const r = await run("btrfs", ["subvolume", "show", path], { allowFailure: true });
  const m = new RegExp(`^\\s*${field}:\\s*(\\S+)`, "m").exec(r.stdout);
  return m && m[1] !== "-" ? m[1] : undefined;
}
