/**
 * Which base versions a node's report may be believed about (issue 15 item
 * 6). A version exists for the controller only once it recorded its seal
 * (`base-versions/`): written from the result of the controller's own
 * build/import/update/snapshot request, never from a heartbeat. A node's
 * reported version counts as held when
 *
 *   - the seal names the node as origin (it made the version for us), or
 *   - the node is one of the seal's recorded holders (a push or delta the
 *     controller ran to it finished and verified), or
 *   - the node reports holding, attached or hydrated, the seed image whose
 *     checksum the seal records;
 *
 * anything else is foreign: shown as such, never `latest`, never a push
 * source, never used for placement. Seals recorded before seals had an
 * origin (older controllers) are trusted from any reporter, as before.
 *
 * The origin's own report may lag the seal (a heartbeat computed before the
 * build ended): for `SEAL_GRACE_MS` after sealing, the origin counts as
 * holding the version even before it says so, so the next command (a layer
 * build on it) finds it.
 */

import { baseRefOf } from "../../common/base-ref.js";
import type { BaseVersion } from "../../proto/gen/protoctl/v1/types.js";
import { BaseVersionState } from "../../proto/gen/protoctl/v1/types.js";

export const SEAL_GRACE_MS = 15_000;

export const refOf = baseRefOf;

/** Whether `node` may be believed when it reports `reported` (a version sealed as `seal`). */
export function trusts(node: string, reported: BaseVersion, seal: BaseVersion | undefined): boolean {
  if (!seal) return false;
  if (!seal.origin) return true;
  if (seal.origin === node || seal.holders.includes(node)) return true;
  // A checksum names a seed image: only an attached or hydrated copy holds one. A "local"
  // subvolume is made by the origin or a delta the controller ran, both recorded above.
  const image =
    reported.state === BaseVersionState.BASE_VERSION_STATE_ATTACHED ||
    reported.state === BaseVersionState.BASE_VERSION_STATE_HYDRATED;
  return image && seal.checksum !== "" && reported.checksum === seal.checksum;
}

/**
 * Splits what `node` reports into versions to trust and foreign ones; adds
 * versions this node sealed less than SEAL_GRACE_MS ago that its report
 * does not show yet.
 */
export function classify(
  node: string,
  reported: readonly BaseVersion[],
  seals: ReadonlyMap<string, BaseVersion>,
  now = Date.now(),
): { trusted: BaseVersion[]; foreign: BaseVersion[] } {
  const trusted: BaseVersion[] = [];
  const foreign: BaseVersion[] = [];
  const seen = new Set<string>();
  for (const r of reported) {
    if (!r.base || r.version <= 0) continue;
    const ref = refOf(r);
    if (seen.has(ref)) continue;
    seen.add(ref);
    (trusts(node, r, seals.get(ref)) ? trusted : foreign).push(r);
  }
  for (const [ref, s] of seals) {
    if (seen.has(ref) || s.origin !== node || now - s.sealedMs > SEAL_GRACE_MS) continue;
    trusted.push({
      ...s,
      state: BaseVersionState.BASE_VERSION_STATE_LOCAL,
      nodes: [],
      users: [],
      holders: [],
      foreignNodes: [],
    });
  }
  return { trusted, foreign };
}

/** Seals by "base@N". */
export function sealMap(seals: Iterable<BaseVersion>): Map<string, BaseVersion> {
  const m = new Map<string, BaseVersion>();
  for (const s of seals) m.set(refOf(s), s);
  return m;
}
