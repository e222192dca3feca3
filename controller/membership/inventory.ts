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
import type { BaseVersion } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { classify, refOf, sealMap } from "./trust.js";

interface Seals {
  map: Map<string, BaseVersion>;
  /** Key and mod revision of every seal: equal when no seal was written or deleted between reads. */
  stamp: string;
}

async function readSeals(ctx: ControllerContext): Promise<Seals> {
  const items = await ctx.store.listBaseVersions();
  return {
    map: sealMap(items.map((v) => v.value)),
    stamp: items.map((v) => `${v.key}@${v.modRevision}`).join(),
  };
}

async function seals(ctx: ControllerContext) {
  return (await readSeals(ctx)).map;
}

/**
 * What one heartbeat stream (one node) learnt from its last inventory write:
 * the seals read after it, and the address and agent version the node record
 * was checked to hold. A steady heartbeat then costs two etcd requests (the
 * write and the seals read after it) instead of five.
 */
export interface InventoryMemo {
  seals?: Seals;
  address?: string;
  agentVersion?: string;
}

/** Stores a heartbeat's inventory, its bases classified; address and agent version into the node record. */
export async function writeInventory(
  ctx: ControllerContext,
  node: string,
  hb: NodeHeartbeat,
  memo: InventoryMemo = {},
): Promise<void> {
  const reported = hb.bases;
  // the seals read after this stream's last write (any change since is caught by the read below)
  const used = memo.seals ?? (await readSeals(ctx));
  const { trusted, foreign } = classify(node, reported, used.map);
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
  const changed = hb.address !== memo.address || hb.agentVersion !== memo.agentVersion;
  if ((hb.address || hb.agentVersion) && changed) {
    await ctx.store.nodes.update(node, (cur) => {
      if (!cur) return undefined;
      const address = hb.address || cur.address;
      const agentVersion = hb.agentVersion || cur.agentVersion;
      if (address === cur.address && agentVersion === cur.agentVersion) return undefined;
      return { ...cur, address, agentVersion };
    });
    memo.address = hb.address;
    memo.agentVersion = hb.agentVersion;
  }
  // A seal written (or deleted) since the ones we classified with: classify again against it.
  const after = await readSeals(ctx);
  memo.seals = after;
  if (after.stamp !== used.stamp) await reclassifyWith(ctx, [node], after.map);
}

/**
 * Classifies the stored inventories of `nodes` (all when omitted) again
 * against the seals on record now: after a seal, a bound checksum or a new
 * holder, and after each inventory write.
 */
export async function reclassify(ctx: ControllerContext, nodes?: string[]): Promise<void> {
  await reclassifyWith(ctx, nodes, await seals(ctx));
}

async function reclassifyWith(
  ctx: ControllerContext,
  nodes: string[] | undefined,
  sealed: Map<string, BaseVersion>,
): Promise<void> {
  const names = nodes ?? (await ctx.store.inventory.list()).items.map((i) => i.value.node);
  for (const node of names) {
    await ctx.store.inventory.update(node, (cur) => {
      if (!cur) return undefined;
      // A version the grace for a fresh seal added (trust.ts classify: it carries the seal's
      // sealedMs; a node reports none) was never reported by the node: once its seal is gone
      // (base rm) it goes too, instead of showing as a foreign copy until the next inventory.
      const held = [...cur.bases, ...cur.foreignBases].filter(
        (b) => b.sealedMs === 0 || sealed.has(refOf(b)),
      );
      const { trusted, foreign } = classify(node, held, sealed);
      const same = (a: typeof trusted, b: typeof trusted) =>
        a.length === b.length && a.every((x, i) => refOf(x) === refOf(b[i]!));
      if (same(trusted, cur.bases) && same(foreign, cur.foreignBases)) return undefined;
      return { ...cur, bases: trusted, foreignBases: foreign };
    });
  }
}
