/** AgentService: node info and pool capacity. */
import { cpus, freemem, totalmem } from "node:os";
import { unaryHandler } from "../../common/grpc.js";
import type { AgentInfo, AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";
import { PoolKind } from "../../proto/gen/protoctl/v1/types.js";
import type { AgentContext } from "./context.js";
import { baseVersionMsg } from "./convert.js";
import { attachmentMsg, exportMsg } from "./propagation-handlers.js";

const POOL_KINDS = {
  tmpfs: PoolKind.POOL_KIND_TMPFS,
  file: PoolKind.POOL_KIND_FILE,
  mount: PoolKind.POOL_KIND_MOUNT,
};

/** This node's identity, capacity and bases (GetInfo, and the heartbeat inventory). */
export async function agentInfo(ctx: AgentContext): Promise<AgentInfo> {
  const [cap, bases, machines, cache] = await Promise.all([
    ctx.pool.capacity(),
    ctx.pool.listBaseVersions(),
    ctx.envs.machinesCheck(),
    ctx.pool.packageCache?.stats(),
  ]);
  return {
    node: ctx.node,
    version: ctx.version,
    capabilities: [
      { name: "nspawn", ok: true, detail: "--register=no --keep-unit" },
      ...(ctx.transport ? [transportCapability(ctx.transport)] : []),
      { name: machines.name, ok: !machines.problem, detail: machines.problem ?? "" },
      ...(cache ? [packageCacheCapability(cache)] : []),
    ],
    capacity: {
      poolSizeBytes: cap.sizeBytes,
      poolFreeBytes: cap.freeBytes,
      memoryBytes: totalmem(),
      memoryFreeBytes: freemem(),
      cpus: cpus().length,
      envs: ctx.envs.names().length,
    },
    bases: bases.map((b) =>
      baseVersionMsg(
        b,
        ctx.node,
        [],
        ctx.propagation?.heldState(b.base, b.version) ?? "local",
        ctx.propagation?.heldChecksum(b.base, b.version) ?? "",
      ),
    ),
    labels: ctx.labels,
    attachments: (ctx.propagation?.listAttachments() ?? []).map((a) => attachmentMsg(a, ctx.node)),
    exports: (ctx.propagation?.listExports() ?? []).map((e) => exportMsg(e, ctx.node)),
  };
}

/** The package cache as `node describe` shows it (capabilities are the node's free-form facts). */
export function packageCacheCapability(c: { bytes: number; files: number; maxBytes: number }) {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return {
    name: "package-cache",
    ok: true,
    detail: `apt: ${mib(c.bytes)} in ${c.files} files, limit ${mib(c.maxBytes)}`,
  };
}

function transportCapability(t: "mtls" | "plaintext") {
  return t === "mtls"
    ? { name: "agent-tls", ok: true, detail: "AgentService over mutual TLS, controller certificates only" }
    : {
        name: "agent-tls",
        ok: false,
        detail: "INSECURE: AgentService in plaintext without authentication (--insecure)",
      };
}

export function infoHandlers(ctx: AgentContext): Pick<AgentServiceServer, "getInfo" | "getPool"> {
  return {
    getInfo: unaryHandler(() => agentInfo(ctx)),
    getPool: unaryHandler(async (req) => {
      const cap = await ctx.pool.capacity();
      const objects = req.usage ? await ctx.pool.usage() : [];
      return {
        kind: POOL_KINDS[ctx.poolKind],
        path: ctx.pool.mountpoint,
        sizeBytes: cap.sizeBytes,
        usedBytes: cap.usedBytes,
        freeBytes: cap.freeBytes,
        objects,
      };
    }),
  };
}
