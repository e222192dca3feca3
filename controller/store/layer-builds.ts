/**
 * A layer's builds as the controller saw them finish (issue 17 item 3):
 * `layer describe` lists which base versions a layer was built on, how big,
 * when and where. Kept in the layer's record (`layers/<name>`); one entry
 * per (base version, agent digest, node), the newest replacing an older one.
 * AddLayer with a new recipe replaces the record, builds and all: builds of
 * an old recipe are not this layer's any more. (The agent's digest covers
 * the parents' too, so it is not the record's recipe digest.)
 */
import type { LayerBuild } from "../../proto/gen/protoctl/v1/types.js";
import type { ClusterStore } from "./store.js";

/** At most this many builds are kept per layer (the newest). */
const MAX_BUILDS = 64;

export async function recordLayerBuild(store: ClusterStore, layer: string, b: LayerBuild): Promise<void> {
  await store.layers.update(layer, (cur) => {
    if (!cur) return undefined;
    const same = (x: LayerBuild) => x.base === b.base && x.node === b.node && x.digest === b.digest;
    const builds = [...cur.layer.builds.filter((x) => !same(x)), b]
      .sort((x, y) => x.builtMs - y.builtMs)
      .slice(-MAX_BUILDS);
    return { ...cur, layer: { ...cur.layer, builds } };
  });
}
