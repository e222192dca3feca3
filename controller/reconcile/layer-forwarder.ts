/**
 * Layers reach agents through the controller: AddLayer stores the recipe in
 * etcd only, and an agent can build a layer only from a recipe it was handed
 * (its pool keeps `recipe.json` per layer). So before CreateEnv the env loop
 * calls `ensure(node, spec)`: for every layer the env stacks (parents first,
 * each once) it streams BuildLayer(recipe, base@N) to the chosen agent. The
 * agent's build is cached per (base@N, recipe digest), so a second call is a
 * cheap no-op there; this side also remembers what each node already has, so
 * envs after the first one skip the call.
 *
 * Why here and not in the agent's CreateEnv: the agent has no etcd access and
 * the recipe can change (AddLayer again) between two envs; the controller
 * knows the current recipe and its digest.
 */
import { failedPrecondition, ProtoctlError } from "../../common/errors.js";
import { iterateStream } from "../../common/grpc.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import type { EnvSpec, LayerBuild, LayerSpec } from "../../proto/gen/protoctl/v1/types.js";
import { recordLayerBuild } from "../store/layer-builds.js";
import type { ClusterStore } from "../store/store.js";

export class LayerForwarder {
  /** `${node}\0${layer}\0${digest}\0${base}@${version}` of builds known to be on a node. */
  private readonly built = new Set<string>();
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(
    private readonly store: ClusterStore,
    private readonly client: (node: string) => AgentServiceClient,
    private readonly timeoutMs = 10 * 60_000,
  ) {}

  /** Builds (or confirms) every layer of `spec` on `node` for base@version. */
  async ensure(node: string, spec: EnvSpec, version: number): Promise<void> {
    if (spec.layers.length === 0) return;
    const base = spec.base?.name ?? "";
    for (const layer of await this.stack(spec.layers)) {
      const digest = layer.digest;
      const key = `${node}\0${layer.spec.name}\0${digest}\0${base}@${version}`;
      if (this.built.has(key)) continue;
      let p = this.inflight.get(key);
      if (!p) {
        p = this.build(node, layer.spec, base, version).finally(() => this.inflight.delete(key));
        this.inflight.set(key, p);
      }
      await p;
      this.built.add(key);
    }
  }

  /** Forgets what a node holds (it restarted with a fresh pool, or left). */
  forgetNode(node: string): void {
    for (const k of this.built) if (k.startsWith(`${node}\0`)) this.built.delete(k);
  }

  /** Layers in build order: each after its parents, each once. */
  private async stack(names: readonly string[]): Promise<Array<{ spec: LayerSpec; digest: string }>> {
    const out: Array<{ spec: LayerSpec; digest: string }> = [];
    const seen = new Set<string>();
    const visit = async (name: string, path: string[]): Promise<void> => {
      if (seen.has(name)) return;
      if (path.includes(name)) {
        throw failedPrecondition(`layer parents form a cycle: ${[...path, name].join(" -> ")}`, {
          reason: "LAYER_CYCLE",
        });
      }
      const rec = await this.store.layers.get(name);
      if (!rec) {
        throw failedPrecondition(`layer ${name} is not known to the cluster`, {
          reason: "LAYER_NOT_FOUND",
          subject: `layer/${name}`,
          hint: `add it with \`protoctl layer add ${name} --script FILE\``,
        });
      }
      for (const p of rec.value.spec.parents) await visit(p, [...path, name]);
      seen.add(name);
      out.push({ spec: rec.value.spec, digest: rec.value.layer.digest });
    };
    for (const n of names) await visit(n, []);
    return out;
  }

  private async build(node: string, layer: LayerSpec, base: string, version: number): Promise<void> {
    const c = this.client(node);
    const stream = c.buildLayer(
      { layer, base: { name: base, version } },
      { deadline: new Date(Date.now() + this.timeoutMs) },
    );
    let built: LayerBuild | undefined;
    try {
      for await (const ev of iterateStream(stream)) {
        // progress and log lines are dropped: the result is the build on the agent
        if (ev.event?.$case === "result" && ev.event.result.result?.$case === "layerBuild") {
          built = ev.event.result.result.layerBuild;
        }
      }
    } catch (err) {
      throw ProtoctlError.from(err);
    }
    // `layer describe` lists it (best effort: the env goes on either way)
    if (built)
      await recordLayerBuild(this.store, layer.name, { ...built, node: built.node || node }).catch(
        () => undefined,
      );
  }
}
