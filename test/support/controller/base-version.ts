/** A node's report of one base version ("name@N") for controller unit tests; unsealed unless `extra` says. */
import { unsealed } from "../../../agent/service/seal-fields.js";
import { type BaseVersion, BaseVersionState } from "../../../proto/gen/protoctl/v1/types.js";

export function reportedVersion(ref: string, extra: Partial<BaseVersion> = {}): BaseVersion {
  const [base, v] = ref.split("@");
  return {
    base: base!,
    version: Number(v),
    source: "",
    createdMs: 0,
    recipeDigest: "",
    sizeBytes: 1,
    state: BaseVersionState.BASE_VERSION_STATE_LOCAL,
    nodes: [],
    users: [],
    parent: "",
    ...unsealed(),
    ...extra,
  };
}
