/**
 * The seal fields of a BaseVersion message as this node fills them: the use
 * cases (env-service) and the gRPC adapters (server/convert.ts) both build
 * versions, so it lives in the lower layer.
 */
import type { BaseVersion } from "../../proto/gen/protoctl/v1/types.js";

/**
 * The seal fields of a version as a node reports it: only the controller
 * seals; a node says which seed image it holds (its checksum, "" if none).
 */
export function unsealed(
  checksum = "",
): Pick<BaseVersion, "origin" | "sealedMs" | "checksum" | "holders" | "foreign" | "foreignNodes"> {
  return { origin: "", sealedMs: 0, checksum, holders: [], foreign: false, foreignNodes: [] };
}
