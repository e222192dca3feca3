/**
 * Where `env cp` reads and writes an env's files. A stopped env: its root on
 * disk, ids as stored (the disk holds in-env ids). A running env: the root of
 * its leader, /proc/LEADER/root, held open for the whole copy so a file lands
 * in (or comes from) what the env itself sees, its own mounts included (a
 * tmpfs on /tmp). There ids are the host's, mapped through the leader's
 * uid/gid maps, and an unprivileged env's new entries are made by
 * protoctl-cpin as the env's root (common/root-access.ts says why).
 */
import { constants as C } from "node:fs";
import { type FileHandle, open, readFile } from "node:fs/promises";
import { IdMap } from "../../common/id-map.js";
import type { RootAccess } from "../../common/root-access.js";
import { CpinCreator } from "../host/machines/cpin.js";
import type { EnvService } from "./env-service.js";

/** Linux's O_PATH (not in fs.constants). */
const O_PATH = 0o10000000;

export interface CopyRoot {
  /** The root to resolve paths in (a held fd's /proc/self/fd/N for a running env). */
  root: string;
  /** Set for a running env. */
  access?: RootAccess;
  close(): Promise<void>;
}

async function leaderOf(envs: EnvService, env: string): Promise<number> {
  return (await envs.get(env)).status?.leaderPid ?? 0;
}

/** The root of env `env` for a copy; `write`: a copy in (a creator is started when ids are mapped). */
export async function copyRootOf(envs: EnvService, env: string, opts: { write: boolean }): Promise<CopyRoot> {
  const disk = envs.rootDirOf(env);
  const onDisk: CopyRoot = { root: disk, close: async () => undefined };
  const leader = await leaderOf(envs, env);
  if (!leader) return onDisk;
  let fh: FileHandle | undefined;
  try {
    fh = await open(`/proc/${leader}/root`, O_PATH | C.O_DIRECTORY);
    const [uidMap, gidMap] = await Promise.all([
      readFile(`/proc/${leader}/uid_map`, "utf8"),
      readFile(`/proc/${leader}/gid_map`, "utf8"),
    ]);
    // still this env's leader after the open: the held root is the env's, whatever the pid becomes
    if ((await leaderOf(envs, env)) !== leader) throw new Error("the env's leader changed");
    const ids = { uids: IdMap.parse(uidMap), gids: IdMap.parse(gidMap) };
    let creator: CpinCreator | undefined;
    if (opts.write && !(ids.uids.identity && ids.gids.identity)) {
      const uid = ids.uids.toHost(0);
      const gid = ids.gids.toHost(0);
      if (uid === undefined || gid === undefined) throw new Error("the env's root has no host ids");
      creator = new CpinCreator(uid, gid);
    }
    const held = fh;
    return {
      root: `/proc/self/fd/${held.fd}`,
      access: { ids, creator },
      close: async () => {
        await creator?.close();
        await held.close().catch(() => undefined);
      },
    };
  } catch (err) {
    await fh?.close().catch(() => undefined);
    // it stopped meanwhile: its root on disk is the env's whole filesystem again
    if ((await leaderOf(envs, env).catch(() => 0)) === 0) return onDisk;
    throw err;
  }
}
