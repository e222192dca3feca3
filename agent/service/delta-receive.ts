import { mkdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { formatBaseRef } from "../../common/base-ref.js";
import { failedPrecondition } from "../../common/errors.js";
import { receiveSubvolume, sendSubvolume } from "../host/deltas/btrfs-stream.js";
import type { BaseVersionMeta } from "../host/interfaces.js";
import { deleteSubvolume } from "../host/pool/btrfs.js";
import type { PropagationPool } from "./propagation-types.js";

/**
 * Puts a version received from a peer (btrfs receive) into the pool under
 * its own number; `parentVersion` is the delta's parent (0: a full send).
 *
 * A parent this node holds as a hydrated seed lives in the seed's sprout,
 * another filesystem, where btrfs receive does not look. It is first
 * copied next to the new version (a local `btrfs send | receive`: the copy
 * keeps the parent's received UUID, by which receive finds it), and the
 * copy is deleted once the version is in: one local copy, after which the
 * node holds the version in its pool and later deltas need none.
 */
export async function receiveVersion(
  o: { pool: PropagationPool; log: Logger },
  meta: BaseVersionMeta,
  fill: (dir: string) => Promise<void>,
  parentVersion = 0,
): Promise<BaseVersionMeta> {
  const held = parentVersion ? o.pool.externalState(meta.base, parentVersion) : undefined;
  if (!held) return o.pool.adoptBaseVersion(meta, fill);
  const ref = formatBaseRef(meta.base, parentVersion);
  if (held !== "hydrated") {
    throw failedPrecondition(
      `${ref} is still attached over NBD: a delta on it would read all of it from its source`,
      {
        reason: "PARENT_NOT_HYDRATED",
        subject: `base/${ref}`,
        hint: "wait until the node holds it locally (push --wait-local), or push with the seed transport",
      },
    );
  }
  const { root } = await o.pool.baseRoot(meta.base, parentVersion);
  return o.pool.adoptBaseVersion(meta, async (dir) => {
    const staging = join(dir, "parent");
    await mkdir(staging);
    const copy = sendSubvolume({ subvolume: root });
    const got = await receiveSubvolume({ dir: staging, stream: copy.stream });
    await copy.done;
    o.log.info({ parent: ref, ms: Math.round(got.durationMs) }, "delta parent copied from its hydrated seed");
    await fill(dir);
    await deleteSubvolume(got.path);
    await rmdir(staging);
  });
}
