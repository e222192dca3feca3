/**
 * The seal of a base version (issue 15 item 6): written from the result of
 * the controller's own request to a node (build, import, update, env
 * snapshot), before that call answers, so the next command finds the
 * version and its holder at once (issue 17 item 2). See
 * membership/trust.ts for what a seal makes trusted.
 */

import { baseRefOf } from "../../common/base-ref.js";
import { failedPrecondition } from "../../common/errors.js";
import type { BaseVersion } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { reclassify } from "../membership/inventory.js";

/**
 * Records the seal of a version the controller asked `node` to make, and
 * the node as its holder, before the call answers.
 */
export async function sealResult(
  ctx: ControllerContext,
  node: string,
  kind: string,
  bv: BaseVersion,
): Promise<BaseVersion> {
  let seal = await ctx.store.recordBaseVersion(bv, node);
  const ref = baseRefOf(bv);
  if (seal.origin && seal.origin !== node && seal.recipeDigest === bv.recipeDigest) {
    // The same recipe made on another node at our request (a base imported on every host, as
    // lab set-ups do): that node holds base@N as well as the origin does.
    seal =
      (await ctx.store.updateSeal(bv.base, bv.version, (s) =>
        s.holders.includes(node) ? undefined : { ...s, holders: [...s.holders, node] },
      )) ?? seal;
  }
  await reclassify(ctx, [node]);
  if (seal.origin && seal.origin !== node && !seal.holders.includes(node)) {
    // Two nodes numbered different versions alike (each counts from what it holds): the first
    // seal stands, the other copy is foreign.
    await ctx.store.events.emit({
      kind: "base.conflict",
      subject: `base/${ref}`,
      message: `${ref} made on ${node} is foreign: ${ref} is sealed from ${seal.origin}`,
      node,
    });
    throw failedPrecondition(
      `${ref} made on ${node} is not recorded: ${ref} was sealed from ${seal.origin}`,
      {
        reason: "VERSION_CONFLICT",
        subject: `base/${ref}`,
        hint: `delete it there with \`protoctl base rm ${ref}\` after checking which copy you want`,
      },
    );
  }
  await ctx.store.events.emit({ kind, subject: `base/${ref}`, message: `${ref} on ${node}`, node });
  return { ...bv, origin: seal.origin, sealedMs: seal.sealedMs, holders: seal.holders, nodes: [node] };
}
