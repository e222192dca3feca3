/**
 * What the store says about a base for a push: which node holds which
 * version in which state (heartbeats, plus the controller's own LOCAL
 * attachment records, as heartbeats lag a push by up to an interval), the
 * seal, and the latest version. The planner (plan.ts) decides on these.
 */
import { failedPrecondition } from "../../common/errors.js";
import { noSuchObject } from "../../common/names.js";
import {
  AttachmentPhase,
  type BaseVersion,
  BaseVersionState,
  NodeState,
} from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { listNodes } from "../server/node-api.js";
import type { Holdings } from "./plan.js";

export async function readHoldings(ctx: ControllerContext, base: string): Promise<Holdings> {
  const [nodes, inv, atts] = await Promise.all([
    listNodes(ctx),
    ctx.store.inventory.list(),
    ctx.store.listAttachments(),
  ]);
  const localAtts = atts.filter(
    (a) => a.value.base === base && a.value.phase === AttachmentPhase.ATTACHMENT_PHASE_LOCAL,
  );
  const invBy = new Map(inv.items.map((i) => [i.value.node, i.value]));
  const out: Holdings = new Map();
  for (const n of nodes) {
    const versions = new Map<number, BaseVersionState>();
    for (const b of invBy.get(n.name)?.bases ?? []) {
      if (b.base === base) versions.set(b.version, b.state || BaseVersionState.BASE_VERSION_STATE_LOCAL);
    }
    const imageSum = new Map<number, string>();
    for (const { value: a } of localAtts) {
      if (a.node !== n.name) continue;
      imageSum.set(a.version, a.checksum);
      const st = versions.get(a.version);
      if (st === undefined || st === BaseVersionState.BASE_VERSION_STATE_ATTACHED) {
        versions.set(a.version, BaseVersionState.BASE_VERSION_STATE_HYDRATED);
      }
    }
    out.set(n.name, {
      imageSum,
      ready: n.state === NodeState.NODE_STATE_READY,
      labels: n.labels,
      versions,
    });
  }
  return out;
}

/** The seal of base@N; FAILED_PRECONDITION when the controller never recorded one. */
export async function sealOf(ctx: ControllerContext, base: string, version: number): Promise<BaseVersion> {
  const seal = (await ctx.store.getBaseVersion(base, version))?.value;
  if (!seal) {
    const reported = (await ctx.store.inventory.list()).items.some((i) =>
      i.value.foreignBases.some((f) => f.base === base && f.version === version),
    );
    if (!reported) {
      throw noSuchObject("base", `${base}@${version}`);
    }
    throw failedPrecondition(`${base}@${version} has no recorded seal: nodes' reports of it are foreign`, {
      reason: "NOT_SEALED",
      subject: `base/${base}@${version}`,
      hint: "see `protoctl base describe`; import, build or update the base through the controller",
    });
  }
  return seal;
}

export async function latestVersion(ctx: ControllerContext, base: string): Promise<number> {
  const v = (await ctx.store.listBaseVersions(base)).at(-1)?.value.version;
  if (!v) {
    throw noSuchObject("base", base);
  }
  return v;
}
