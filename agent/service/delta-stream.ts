/**
 * Deltas over the wire (SendDelta / ReceiveDelta): a base version's root as
 * a btrfs send stream, and such a stream received into the pool. The gRPC
 * adapters call these; the btrfs driver stays below the service layer.
 */
import type { Readable } from "node:stream";
import { invalidArgument } from "../../common/errors.js";
import { receiveSubvolume, sendSubvolume } from "../host/deltas/btrfs-stream.js";
import type { SendStream } from "../host/deltas/types.js";
import type { BaseVersionMeta } from "../host/interfaces.js";
import type { PropagationService } from "./propagation-service.js";

/** base@version's root as a send stream, incremental over parentVersion (0: full). */
export async function sendVersion(
  svc: PropagationService,
  base: string,
  version: number,
  parentVersion = 0,
): Promise<SendStream> {
  const root = (await svc.rootOf(base, version)).root;
  const parent = parentVersion ? (await svc.rootOf(base, parentVersion)).root : undefined;
  return sendSubvolume({ subvolume: root, parent });
}

/** Receives a peer's send stream of `meta` (over parentVersion) into the pool. */
export function receiveVersionStream(
  svc: PropagationService,
  meta: BaseVersionMeta,
  stream: Readable,
  parentVersion = 0,
): Promise<BaseVersionMeta> {
  return svc.receive(
    meta,
    (dir) =>
      receiveSubvolume({ dir, stream }).then((r) => {
        if (r.name !== "root") throw invalidArgument(`delta carries subvolume ${r.name}, not root`);
      }),
    parentVersion,
  );
}
