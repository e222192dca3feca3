/**
 * The seed images of a base's versions: published once by the origin (the
 * first publish binds the seal's checksum; a republish by the origin
 * rebinds it), and collected once no node reads over NBD any more. Holders
 * a push verified are recorded on the seal.
 */
import { Code, failedPrecondition, ProtoctlError } from "../../common/errors.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import { BaseVersionState, type OperationEvent, type SeedImage } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { reclassify } from "../membership/inventory.js";
import { readHoldings, sealOf } from "./holdings.js";
import { collect } from "./run.js";

/** What the executor tells the keeper: pushes of "base@N" being set up, or running. */
export interface PushActivity {
  starting(ref: string): boolean;
  running(ref: string): boolean;
}

export class SeedKeeper {
  /** Per "base@N": the seed being published. */
  private readonly seeds = new Map<string, Promise<SeedImage>>();
  /** Per "base@N": a running collection (a push waits for it before reading the seed record). */
  readonly collecting = new Map<string, Promise<unknown>>();

  constructor(
    private readonly ctx: ControllerContext,
    private readonly busy: PushActivity = { starting: () => false, running: () => false },
  ) {}

  /**
   * The seed of base@N: the recorded one (its image may since have been
   * collected on the origin: then hydrated nodes serve it), or with
   * `republish` a fresh image from `origin`.
   */
  seed(base: string, version: number, origin: string, republish: boolean): Promise<SeedImage> {
    const ref = `${base}@${version}`;
    let p = this.seeds.get(ref);
    if (!p) {
      p = (async () => {
        const seal = await sealOf(this.ctx, base, version);
        const have = (await this.ctx.store.listSeeds()).find(
          (s) => s.value.base === base && s.value.version === version,
        );
        // Targets verify what they copy against the seal's checksum, never a source's claim.
        if (have && !republish && (!seal.checksum || have.value.checksum === seal.checksum)) {
          return { ...have.value, checksum: seal.checksum || have.value.checksum };
        }
        if (seal.origin && origin !== seal.origin) {
          throw failedPrecondition(`${ref} can only be published by its origin ${seal.origin}`, {
            reason: "NO_ORIGIN",
            subject: `base/${ref}`,
            hint: `push again once node ${seal.origin} is Ready`,
          });
        }
        const c = await this.ctx.agents.forNode(this.ctx.store, origin);
        let seed: SeedImage | undefined;
        await collect(c.publishSeed({ ref: { name: base, version } }), (ev: OperationEvent) => {
          if (ev.event?.$case === "result" && ev.event.result.result?.$case === "seed") {
            seed = ev.event.result.result.seed;
          }
        });
        if (!seed) throw new ProtoctlError(Code.INTERNAL, `PublishSeed of ${ref} returned no seed`);
        const published = seed;
        // The origin's image of the version it made binds the seal's checksum (first publish,
        // or a republish after its image was collected: only the origin can do either).
        if (seal.origin && published.checksum !== seal.checksum) {
          await this.ctx.store.updateSeal(base, version, (s) => ({ ...s, checksum: published.checksum }));
          await this.ctx.store.events.emit({
            kind: seal.checksum ? "base.resealed" : "base.sealed",
            subject: `base/${ref}`,
            message: `seed image ${published.checksum} from ${origin}`,
            node: origin,
          });
          await reclassify(this.ctx);
        }
        await this.ctx.store.putSeed(published);
        return published;
      })();
      this.seeds.set(ref, p);
      p.catch(() => undefined).finally(() => this.seeds.delete(ref));
    }
    return p;
  }

  /** Records `node` as a holder of base@N after a push the controller ran verified it there. */
  async addHolder(base: string, version: number, node: string): Promise<void> {
    await this.ctx.store
      .updateSeal(base, version, (s) =>
        !s.origin || s.origin === node || s.holders.includes(node)
          ? undefined
          : { ...s, holders: [...s.holders, node] },
      )
      .then(() => reclassify(this.ctx, [node]))
      .catch((err) => this.ctx.log.warn({ err: (err as Error).message }, "holder record failed"));
  }

  /**
   * Seeds no node needs any more: when every ready node holding base@N holds
   * it locally or hydrated (none still reads over NBD), the exports stop and
   * the origin deletes the image. A later push publishes again.
   */
  async collectGarbage(base: string, version: number, force = false): Promise<boolean> {
    const ref = `${base}@${version}`;
    // A push being set up may have read the seed record already: keep the seed.
    if (!force && this.busy.starting(ref)) return false;
    const p = this.collectOnce(base, version, force);
    this.collecting.set(ref, p);
    try {
      return await p;
    } finally {
      if (this.collecting.get(ref) === p) this.collecting.delete(ref);
    }
  }

  private async collectOnce(base: string, version: number, force: boolean): Promise<boolean> {
    const holds = await readHoldings(this.ctx, base);
    const reading = [...holds.values()].some(
      (h) => h.ready && h.versions.get(version) === BaseVersionState.BASE_VERSION_STATE_ATTACHED,
    );
    const running = this.busy.running(`${base}@${version}`);
    if (!force && (reading || running)) return false;
    const exports = (await this.ctx.store.listExports()).filter(
      (e) => e.value.base === base && e.value.version === version,
    );
    for (const e of exports) {
      await this.call(e.value.node, (c, cb) => c.stopExport({ ref: { name: base, version } }, cb));
    }
    for (const e of exports) await this.ctx.store.deleteExport(base, version, e.value.node);
    // The image itself goes once no node can need it: every ready node holds the version, or a
    // newer version exists (or the version is deleted: force).
    const latest = (await this.ctx.store.listBaseVersions(base)).at(-1)?.value.version ?? 0;
    const everywhere = [...holds.values()].every(
      (h) =>
        !h.ready ||
        (h.versions.has(version) && h.versions.get(version) !== BaseVersionState.BASE_VERSION_STATE_ATTACHED),
    );
    if (!force && !everywhere && version >= latest) return true;
    const seeds = (await this.ctx.store.listSeeds()).filter(
      (s) => s.value.base === base && s.value.version === version,
    );
    for (const s of seeds) {
      if (s.value.node)
        await this.call(s.value.node, (c, cb) => c.deleteSeed({ ref: { name: base, version } }, cb));
    }
    await this.ctx.store.deleteSeed(base, version, force);
    // Unless the version is gone, keep the record without its image (node ""): its checksum names
    // what hydrated nodes hold, so they can serve a later push without a new image.
    if (!force) for (const s of seeds) await this.ctx.store.putSeed({ ...s.value, node: "" });
    return true;
  }

  private async call(
    node: string,
    fn: (c: AgentServiceClient, cb: (err: unknown) => void) => void,
  ): Promise<void> {
    try {
      const c = await this.ctx.agents.forNode(this.ctx.store, node);
      await new Promise<void>((resolve, reject) => fn(c, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      this.ctx.log.debug({ node, err: (err as Error).message }, "propagation cleanup call failed");
    }
  }
}
