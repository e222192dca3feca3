/**
 * One leader's pass over a base deletion: delete base@N (or every version)
 * on each Ready node holding it (foreign copies too: `base rm` is how an
 * operator clears them), then its seals, the base, and the seed images.
 * Every step is idempotent, so a pass after a leader change just runs again.
 */
import { fromServiceError } from "../../common/grpc.js";
import { BaseVersion, NodeState } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import type { SeedKeeper } from "../propagation/seeds.js";
import { listNodes } from "../server/node-api.js";
import type { BaseDeleteSpec } from "./record.js";

/** Runs the deletion; returns the deleted versions (as the API answers them). */
export async function baseDeletePass(
  ctx: ControllerContext,
  seeds: SeedKeeper,
  spec: BaseDeleteSpec,
): Promise<BaseVersion[]> {
  const s = ctx.store;
  const { base: name, version } = spec;
  const deleted: BaseVersion[] = [];
  for (const n of await listNodes(ctx)) {
    if (n.state !== NodeState.NODE_STATE_READY) continue;
    const held = [...n.baseVersions, ...n.foreignBaseVersions];
    if (!held.some((b) => b === `${name}@${version}` || (!version && b.startsWith(`${name}@`)))) continue;
    const client = await ctx.agents.forNode(ctx.store, n.name);
    const res = await new Promise<{ deleted: BaseVersion[] }>((resolve, reject) =>
      client.deleteBaseVersion({ ref: { name, version } }, (err, r) =>
        err ? reject(fromServiceError(err)) : resolve(r),
      ),
    );
    deleted.push(...res.deleted);
    // what the node deleted leaves its stored inventory now: its next heartbeat may be seconds
    // away, and once the seals below are gone a version still listed there shows as foreign
    const gone = new Set(res.deleted.map((d) => `${d.base}@${d.version}`));
    if (gone.size > 0) {
      const keep = (b: BaseVersion) => !gone.has(`${b.base}@${b.version}`);
      await s.inventory.update(n.name, (cur) =>
        cur && [...cur.bases, ...cur.foreignBases].some((b) => !keep(b))
          ? { ...cur, bases: cur.bases.filter(keep), foreignBases: cur.foreignBases.filter(keep) }
          : undefined,
      );
    }
  }
  for (const v of await s.listBaseVersions(name)) {
    if (!version || v.value.version === version) {
      await s.deleteBaseVersion(name, v.value.version);
      if (!deleted.some((d) => d.version === v.value.version)) deleted.push(v.value);
    }
  }
  if (!version || (await s.listBaseVersions(name)).length === 0) await s.bases.delete(name);
  // Seed images of deleted versions are garbage now.
  for (const seed of await s.listSeeds()) {
    if (seed.value.base === name && (!version || seed.value.version === version)) {
      await seeds.collectGarbage(name, seed.value.version, true);
    }
  }
  return deleted;
}

export const encodeDeleted = (vs: BaseVersion[]): unknown => vs.map((v) => BaseVersion.toJSON(v));
export const decodeDeleted = (o: unknown): BaseVersion[] =>
  Array.isArray(o) ? o.map((v) => BaseVersion.fromJSON(v)) : [];
