/** Pool metadata → wire messages. */
import {
  type BaseVersion,
  BaseVersionState,
  type Layer,
  type LayerBuild,
  RecipeKind,
} from "../../proto/gen/protoctl/v1/types.js";
import type { BaseVersionMeta, LayerBuildMeta } from "../host/interfaces.js";
import type { HeldState } from "../service/base-service.js";
import { unsealed } from "../service/seal-fields.js";

export type { HeldState };

const HELD: Record<HeldState, BaseVersionState> = {
  local: BaseVersionState.BASE_VERSION_STATE_LOCAL,
  attached: BaseVersionState.BASE_VERSION_STATE_ATTACHED,
  hydrated: BaseVersionState.BASE_VERSION_STATE_HYDRATED,
};

export function baseVersionMsg(
  m: BaseVersionMeta,
  node: string,
  users: string[] = [],
  held: HeldState = "local",
  checksum = "",
): BaseVersion {
  return {
    base: m.base,
    version: m.version,
    source: m.source,
    createdMs: m.createdMs,
    recipeDigest: m.recipeDigest,
    sizeBytes: m.sizeBytes,
    state: HELD[held],
    nodes: [node],
    users,
    parent: m.parent ?? "",
    ...unsealed(checksum),
    ...(m.image ? { image: m.image } : {}),
  };
}

export function layerBuildMsg(m: LayerBuildMeta, node: string): LayerBuild {
  return {
    base: m.base,
    digest: m.digest,
    sizeBytes: m.sizeBytes,
    builtMs: m.builtMs,
    node,
    from: m.from ?? "",
  };
}

/** Groups layer builds into one Layer per name. */
export function layersMsg(builds: LayerBuildMeta[], node: string): Layer[] {
  const by = new Map<string, Layer>();
  for (const b of builds) {
    let l = by.get(b.layer);
    if (!l) {
      l = {
        name: b.layer,
        digest: b.digest,
        kind: b.kind === "ansible" ? RecipeKind.RECIPE_KIND_ANSIBLE : RecipeKind.RECIPE_KIND_SHELL,
        parents: b.parents,
        builds: [],
        createdMs: b.builtMs,
      };
      by.set(b.layer, l);
    }
    l.builds.push(layerBuildMsg(b, node));
    if (b.builtMs > l.createdMs) l.digest = b.digest;
  }
  return [...by.values()].sort((a, b) => a.name.localeCompare(b.name));
}
