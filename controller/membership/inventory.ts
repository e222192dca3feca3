/**
 * A node's inventory as the controller stores it (`node-inventory/<node>`):
 * what the agent reported, with its base versions split by the recorded
 * seals (trust.ts) into `bases` (believed) and `foreignBases`. Everything
 * downstream (node listing, scheduler, pushes, base work placement) reads
 * `bases` only, so a foreign version is never latest, a source or a
 * placement reason.
 *
 * A heartbeat and a seal write race: each side re-checks after its own
 * write (`reclassify`), so whichever lands last sees the other.
 */
import type { NodeHeartbeat } from "../../proto/gen/protoctl/v1/control.js";
import type { ControllerContext } from "../context.js";
import { classify, refOf, sealMap } from "./trust.js";

async function seals(ctx: ControllerContext) {
  return sealMap((await ctx.store.listBaseVersions()).map((v) => v.value));
}

/** Stores a heartbeat's inventory, its bases classified; address and agent version into the node record. */
export async function writeInventory(ctx: ControllerContext, node: string, hb: NodeHeartbeat): Promise<void> {
  const reported = hb.bases;
  const { trusted, foreign } = classify(node, reported, await seals(ctx));
  const inv: NodeHeartbeat = {
    ...hb,
    node,
    sentMs: Date.now(),
    inventory: true,
    bases: trusted,
    foreignBases: foreign,
  };
  await ctx.store.inventory.put(node, inv);
  if (foreign.length > 0) {
    ctx.log.warn({ node, foreign: foreign.map(refOf) }, "node reports base versions without a matching seal");
  }
  if (hb.address || hb.agentVersion) {
    await ctx.store.nodes.update(node, (cur) => {
      if (!cur) return undefined;
      const address = hb.address || cur.address;
      const agentVersion = hb.agentVersion || cur.agentVersion;
      if (address === cur.address && agentVersion === cur.agentVersion) return undefined;
      return { ...cur, address, agentVersion };
    });
  }
  // A seal written since we read them: classify again against it.
  await reclassify(ctx, [node]);
}

/**
 * Classifies the stored inventories of `nodes` (all when omitted) again
 * against the seals on record now: after a seal, a bound checksum or a new
 * holder, and after each inventory write.
 */
export async function reclassify(ctx: ControllerContext, nodes?: string[]): Promise<void> {
  const sealed = await seals(ctx);
  const names = nodes ?? (await ctx.store.inventory.list()).items.map((i) => i.value.node);
  for (const node of names) {
    await ctx.store.inventory.update(node, (cur) => {
      if (!cur) return undefined;
      const { trusted, foreign } = classify(node, [...cur.bases, ...cur.foreignBases], sealed);
      const same = (a: typeof trusted, b: typeof trusted) =>
        a.length === b.length && a.every((x, i) => refOf(x) === refOf(b[i]!));
      if (same(trusted, cur.bases) && same(foreign, cur.foreignBases)) return undefined;
      return { ...cur, bases: trusted, foreignBases: foreign };
    });
  }
}
