/**
 * Migration of a state dir made by an older `up`: etcd on plaintext
 * 127.0.0.1 and the cluster CA (certificate and private key) kept in etcd
 * under cluster/ca-key. Run by `up` before it starts anything, when etcd has
 * data but there is no CA on disk:
 *
 *   1. etcd runs once more the old way (plaintext, loopback) to read the CA;
 *   2. the CA goes to <state>/controller/ca (key 0600, dir 0700), where the
 *      controller with tls.caStore=disk finds it, so every certificate issued
 *      before (admin credential, node certificates) stays valid;
 *   3. the key is deleted from etcd, and the history compacted and
 *      defragmented, so no older revision still holds it;
 *   4. etcd stops; `up` starts it again with TLS client authentication.
 *
 * A failure before step 3 leaves etcd's data as it was (the disk copy is only
 * used once the key is gone from etcd: a retry redoes the whole migration).
 */
import { existsSync } from "node:fs";
import { mkdir, rename } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../common/atomic-file.js";
import { failedPrecondition } from "../../common/errors.js";
import { spawnProcess } from "../../common/exec.js";
import type { CertificateAuthority } from "../../common/tls.js";
import { etcdMemberArgs } from "./etcd-pki.js";
import type { StatePaths } from "./state.js";

/**
 * Where an older `up` kept the CA key: the default prefix's `cluster/ca-key`. A
 * fixed key on purpose: it names where old state is, whatever the key layout
 * (controller/store/keys.ts) becomes.
 */
const LEGACY_CA_KEY = "/protoctl/v1/cluster/ca-key";

export function caDir(paths: StatePaths): string {
  return join(paths.controllerDir, "ca");
}

/** True when the state dir has etcd data and no CA on disk: made by an older `up`. */
export function needsMigration(paths: StatePaths): boolean {
  return existsSync(join(paths.etcdDir, "member")) && !existsSync(join(caDir(paths), "ca.key"));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Moves the CA key from etcd to disk; returns the key file, or undefined when etcd held no CA. */
export async function migrateLegacyState(
  o: { etcdPort: number; etcdPeerPort: number },
  paths: StatePaths,
): Promise<string | undefined> {
  const client = `http://127.0.0.1:${o.etcdPort}`;
  const etcd = spawnProcess("etcd", [...etcdMemberArgs(o, paths.etcdDir, "http"), "--log-level", "warn"], {
    stdin: "ignore",
    stdout: { file: paths.log("etcd"), append: true },
    stderr: { file: paths.log("etcd"), append: true },
    buffer: false,
    reject: false,
  });
  // loaded here only: every other `up` runs without an etcd client
  const { Etcd3 } = await import("etcd3");
  const kv = new Etcd3({ hosts: [client], dialTimeout: 3000 });
  try {
    const key = LEGACY_CA_KEY;
    let raw: string | null | undefined;
    const deadline = Date.now() + 30_000;
    while (raw === undefined) {
      if (etcd.exitCode !== undefined && etcd.exitCode !== null) break;
      raw = await kv
        .get(key)
        .string()
        .catch(() => undefined);
      if (raw === undefined) {
        if (Date.now() > deadline) break;
        await sleep(200);
      }
    }
    if (raw === undefined) {
      throw failedPrecondition("cannot migrate the state dir: its etcd did not start the old way", {
        reason: "MIGRATION_FAILED",
        hint: `see ${paths.log("etcd")}`,
      });
    }
    const dir = caDir(paths);
    const keyFile = join(dir, "ca.key");
    const tmp = `${keyFile}.tmp`;
    if (raw === null) {
      // a run that stopped between the delete and the rename below
      if (!existsSync(tmp)) return undefined;
      await rename(tmp, keyFile);
      return keyFile;
    }
    const ca = JSON.parse(raw) as CertificateAuthority;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(dir, "ca.crt"), ca.certPem, 0o644);
    // renamed last: its presence marks the migration done
    await writeFileAtomic(tmp, ca.keyPem, 0o600);
    const del = await kv.delete().key(key).exec();
    await kv.kv.compact({ revision: del.header.revision, physical: true });
    await kv.maintenance.defragment();
    await rename(tmp, keyFile);
    return keyFile;
  } finally {
    kv.close();
    etcd.kill("SIGTERM");
    const t = setTimeout(() => etcd.kill("SIGKILL"), 10_000);
    await etcd;
    clearTimeout(t);
  }
}
