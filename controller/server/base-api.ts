/**
 * Base and layer RPCs. Import/build/update run on one agent (the node named
 * in the request, or a ready node chosen here) and stream its progress back;
 * the resulting version is recorded in the store. Which nodes hold a version
 * comes from their heartbeats (node-inventory). Layers are stored as specs
 * and built lazily by agents when an env needs them (or eagerly on request).
 */
import { createHash } from "node:crypto";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { baseRefOf } from "../../common/base-ref.js";
import { Code, failedPrecondition, notFound, ProtoctlError, unavailable } from "../../common/errors.js";
import { fromServiceError, toServiceError } from "../../common/grpc.js";
import { noSuchObject, validateName } from "../../common/names.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import type {
  AddLayerRequest,
  ControlBuildBaseRequest,
  ControlImportBaseRequest,
  ControlUpdateBaseRequest,
  DeleteBaseRequest,
  PushBaseRequest,
  PushProgress,
} from "../../proto/gen/protoctl/v1/control.js";
import {
  type Base,
  type BaseVersion,
  BaseVersionState,
  EnvPhase,
  type Layer,
  type LayerBuild,
  NodeState,
  type OperationEvent,
  Recipe,
} from "../../proto/gen/protoctl/v1/types.js";
import { agentCall, agentFor } from "../agents/call.js";
import type { ControllerContext } from "../context.js";
import { decodeDeleted } from "../operations/base-delete-pass.js";
import { followOperation, fromStoredError } from "../operations/follow.js";
import { createPush, followPush } from "../operations/push-requests.js";
import { newOperationId, newRecord } from "../operations/record.js";
import { latestVersion, readHoldings, sealOf } from "../propagation/holdings.js";
import { resolveTargets } from "../propagation/plan.js";
import { recordLayerBuild } from "../store/layer-builds.js";
import { pipeFrom, serverStream, unary } from "./handlers.js";
import { listNodes } from "./node-api.js";
import { sealResult } from "./seal.js";

/** Picks the node for base work: the one asked for, else a ready node holding `holding`, else the one with most free pool. */
async function pickNode(ctx: ControllerContext, asked: string, holding?: string): Promise<string> {
  const all = await listNodes(ctx);
  const nodes = all.filter((n) => n.state === NodeState.NODE_STATE_READY);
  if (asked) {
    validateName("node", asked);
    if (!all.some((n) => n.name === asked)) {
      throw noSuchObject("node", asked);
    }
    if (!nodes.some((n) => n.name === asked)) {
      throw unavailable(`node ${asked} is not Ready`, { reason: "NODE_NOT_READY", subject: `node/${asked}` });
    }
    return asked;
  }
  const usable = nodes.filter(
    (n) => !n.cordoned && (!holding || n.baseVersions.some((b) => b.startsWith(`${holding}@`))),
  );
  if (usable.length === 0) {
    if (holding && (await ctx.store.listBaseVersions(holding)).length === 0) {
      throw noSuchObject("base", holding);
    }
    throw failedPrecondition(holding ? `no ready node holds base ${holding}` : "no ready node", {
      reason: "NO_NODE",
      hint: "see `protoctl node ls`",
    });
  }
  usable.sort(
    (a, b) =>
      (b.capacity?.poolFreeBytes ?? 0) - (a.capacity?.poolFreeBytes ?? 0) || a.name.localeCompare(b.name),
  );
  return usable[0]!.name;
}

/**
 * Watches an agent's operation stream for its result version: the result is
 * held back until its seal is recorded (`done`), then sent with the seal.
 */
function recorder(ctx: ControllerContext, node: string, kind: string) {
  let held: { ev: OperationEvent; bv: BaseVersion } | undefined;
  return {
    observe(ev: OperationEvent): OperationEvent | undefined {
      if (ev.event?.$case === "result" && ev.event.result.result?.$case === "baseVersion") {
        held = { ev, bv: ev.event.result.result.baseVersion };
        return undefined;
      }
      if (ev.event?.$case === "progress" && !ev.event.progress.node) ev.event.progress.node = node;
      return ev;
    },
    async done(send: (m: OperationEvent) => void): Promise<void> {
      if (!held) return;
      const seal = await sealResult(ctx, node, kind, held.bv);
      send({ event: { $case: "result", result: { result: { $case: "baseVersion", baseVersion: seal } } } });
    },
  };
}

/**
 * Bases as the controller knows them: sealed versions with the nodes
 * believed to hold them, and what nodes report beyond that marked foreign
 * (a version never sealed: `foreign`; a sealed one from a node that does
 * not match its seal: `foreignNodes`). `latest` counts sealed versions only.
 */
async function composeBases(ctx: ControllerContext, only?: string): Promise<Base[]> {
  const [versions, nodes, bases, inv] = await Promise.all([
    ctx.store.listBaseVersions(only),
    listNodes(ctx),
    ctx.store.bases.list(),
    ctx.store.inventory.list(),
  ]);
  const holders = new Map<string, string[]>();
  for (const n of nodes)
    for (const ref of n.baseVersions) holders.set(ref, [...(holders.get(ref) ?? []), n.name]);
  const foreignBy = new Map<string, { bv: BaseVersion; nodes: string[] }>();
  for (const { value: i } of inv.items) {
    for (const f of i.foreignBases) {
      if (only && f.base !== only) continue;
      const ref = baseRefOf(f);
      const e = foreignBy.get(ref) ?? { bv: f, nodes: [] };
      e.nodes.push(i.node);
      foreignBy.set(ref, e);
    }
  }
  const out = new Map<string, Base>();
  for (const b of bases.items)
    if (!only || b.value.name === only) out.set(b.value.name, { ...b.value, versions: [] });
  for (const v of versions) {
    const ref = baseRefOf(v.value);
    const bv: BaseVersion = {
      ...v.value,
      nodes: holders.get(ref) ?? [],
      foreignNodes: foreignBy.get(ref)?.nodes ?? [],
    };
    foreignBy.delete(ref);
    const b = out.get(bv.base) ?? { name: bv.base, versions: [], latest: 0 };
    b.versions.push(bv);
    b.latest = Math.max(b.latest, bv.version);
    out.set(bv.base, b);
  }
  for (const { bv, nodes: reporters } of foreignBy.values()) {
    const b = out.get(bv.base) ?? { name: bv.base, versions: [], latest: 0 };
    b.versions.push({
      ...bv,
      state: BaseVersionState.BASE_VERSION_STATE_UNSPECIFIED,
      nodes: [],
      users: [],
      origin: "",
      sealedMs: 0,
      holders: [],
      foreign: true,
      foreignNodes: reporters,
    });
    out.set(bv.base, b);
  }
  for (const b of out.values()) b.versions.sort((x, y) => x.version - y.version);
  return [...out.values()];
}

function opStream(
  ctx: ControllerContext,
  client: AgentServiceClient,
  node: string,
  kind: string,
  start: (c: AgentServiceClient) => import("@grpc/grpc-js").ClientReadableStream<OperationEvent>,
) {
  return async (send: (m: OperationEvent) => void, call: { on(e: "cancelled", f: () => void): unknown }) => {
    const rec = recorder(ctx, node, kind);
    const up = start(client);
    call.on("cancelled", () => up.cancel());
    await pipeFrom(
      up,
      (m: OperationEvent | undefined) => m && send(m),
      (m) => rec.observe(m),
    ).catch((err) => {
      throw fromServiceError(err);
    });
    await rec.done(send);
  };
}

export function baseApi(ctx: ControllerContext) {
  const s = ctx.store;
  return {
    importBase: (call: ServerDuplexStream<ControlImportBaseRequest, OperationEvent>) => {
      let upstream: ReturnType<AgentServiceClient["importBase"]> | undefined;
      const queue: ControlImportBaseRequest[] = [];
      let ended = false;
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        upstream?.cancel();
        call.emit("error", toServiceError(err));
      };
      const forward = (m: ControlImportBaseRequest) => {
        if (m.part?.$case === "header") {
          const h = m.part.header;
          upstream!.write({
            part: {
              $case: "header",
              header: { name: h.name, source: h.source, compression: h.compression, format: h.format },
            },
          });
        } else if (
          m.part?.$case === "chunk" &&
          !upstream!.write({ part: { $case: "chunk", chunk: m.part.chunk } })
        ) {
          // backpressure: the controller holds at most one window of an upload in memory
          call.pause();
          upstream!.once("drain", () => call.resume());
        }
      };
      call.on("data", (m: ControlImportBaseRequest) => {
        if (upstream) return forward(m);
        queue.push(m);
        if (queue.length > 1) return;
        if (m.part?.$case !== "header")
          return fail(
            new ProtoctlError(Code.INVALID_ARGUMENT, "the first import message must be the header"),
          );
        const h = m.part.header;
        call.pause(); // nothing more is read until the agent's stream is open
        (async () => {
          validateName("base", h.name);
          const node = await pickNode(ctx, h.node);
          const client = await agentFor(ctx, node);
          const rec = recorder(ctx, node, "base.imported");
          const up = client.importBase();
          upstream = up;
          up.on("data", (ev: OperationEvent) => {
            const m = rec.observe(ev);
            if (m) call.write(m);
          });
          up.on("error", (err) => fail(fromServiceError(err)));
          up.on("end", () => {
            rec
              .done((m) => call.write(m))
              .then(() => {
                if (!failed) call.end();
              }, fail);
          });
          for (const q of queue.splice(0)) forward(q);
          if (ended) up.end();
          else call.resume();
        })().catch(fail);
      });
      call.on("end", () => {
        ended = true;
        upstream?.end();
      });
      call.on("cancelled", () => upstream?.cancel());
    },

    buildBase: serverStream<ControlBuildBaseRequest, OperationEvent>(async (req, send, call) => {
      validateName("base", req.name);
      const node = await pickNode(ctx, req.node);
      const client = await agentFor(ctx, node);
      await opStream(ctx, client, node, "base.built", (c) => c.buildBase({ name: req.name, spec: req.spec }))(
        send,
        call,
      );
    }),

    updateBase: serverStream<ControlUpdateBaseRequest, OperationEvent>(async (req, send, call) => {
      validateName("base", req.name);
      const node = await pickNode(ctx, req.node, req.name);
      const client = await agentFor(ctx, node);
      await opStream(ctx, client, node, "base.updated", (c) =>
        c.updateBase({ name: req.name, command: req.command, script: req.script, network: req.network }),
      )(send, call);
    }),

    listBases: unary(async () => ({ bases: await composeBases(ctx) })),

    getBase: unary(async (req: { name: string }) => {
      validateName("base", req.name);
      const b = (await composeBases(ctx, req.name))[0];
      if (!b)
        throw notFound(`base ${req.name} not found`, {
          reason: "BASE_NOT_FOUND",
          subject: `base/${req.name}`,
          hint: "see `protoctl base ls`",
        });
      return b;
    }),

    // The push is a record the leader carries out (controller/operations/): this replica writes
    // it, with its targets resolved now, and streams its progress.
    pushBase: serverStream<PushBaseRequest, PushProgress>(async (req, send) => {
      const base = validateName("base", req.ref?.name);
      const version = req.ref?.version || (await latestVersion(ctx, base));
      const targets = resolveTargets(await readHoldings(ctx, base), req.nodes, req.selector);
      await sealOf(ctx, base, version);
      const id = await createPush(s, {
        base,
        version,
        targets,
        fanout: req.fanout,
        transport: req.transport,
        asker: "api",
      });
      await followPush(s, id, req.waitLocal, send);
      const ref = `${req.ref?.name}@${req.ref?.version || "latest"}`;
      await s.events.emit({ kind: "base.pushed", subject: `base/${ref}`, message: "pushed" });
    }),

    deleteBase: unary(async (req: DeleteBaseRequest) => {
      const name = validateName("base", req.ref?.name);
      const version = req.ref?.version ?? 0;
      const [statuses, specs] = await Promise.all([s.envStatus.list(), s.envSpecs.list()]);
      const specBy = new Map(specs.items.map((i) => [i.value.name, i.value]));
      for (const st of statuses.items) {
        const envName = s.envStatus.nameOf(st.key)!;
        const spec = specBy.get(envName);
        if (spec?.base?.name !== name || st.value.phase === EnvPhase.ENV_PHASE_LOST) continue;
        if (!version || st.value.baseVersion === version) {
          throw failedPrecondition(`base ${name}${version ? `@${version}` : ""} is used by env ${envName}`, {
            reason: "BASE_IN_USE",
            hint: `delete or roll env ${envName} first`,
          });
        }
      }
      // The deletion is a record the leader carries out; this replica waits for its outcome.
      const id = newOperationId();
      await s.operations.create(id, newRecord({ kind: "base-delete", baseDelete: { base: name, version } }));
      const rec = await followOperation(
        s,
        id,
        (r) => r.status.phase === "succeeded" || r.status.phase === "failed",
      );
      if (rec.status.phase === "failed" && rec.status.error) throw fromStoredError(rec.status.error);
      const deleted = decodeDeleted(rec.status.result);
      await s.events.emit({
        kind: "base.deleted",
        subject: `base/${name}${version ? `@${version}` : ""}`,
        message: "deleted",
      });
      return { deleted };
    }),
  };
}

export function layerApi(ctx: ControllerContext) {
  const s = ctx.store;
  return {
    addLayer: serverStream<AddLayerRequest, OperationEvent>(async (req, send, call) => {
      const spec = req.layer;
      if (!spec)
        throw new ProtoctlError(Code.INVALID_ARGUMENT, "layer spec is missing", { reason: "SPEC_MISSING" });
      validateName("layer", spec.name);
      for (const p of spec.parents) validateName("layer", p);
      const digest = createHash("sha256")
        .update(Recipe.encode(spec.recipe ?? { kind: 0, main: Buffer.alloc(0), files: [] }).finish())
        .digest("hex");
      const layer: Layer = {
        name: spec.name,
        digest,
        kind: spec.recipe?.kind ?? 0,
        parents: spec.parents,
        builds: [],
        createdMs: Date.now(),
      };
      await s.layers.update(spec.name, (cur) =>
        cur && cur.layer.digest === digest ? undefined : { layer, spec },
      );
      await s.events.emit({
        kind: "layer.added",
        subject: `layer/${spec.name}`,
        message: `digest ${digest.slice(0, 12)}`,
      });
      let last: LayerBuild = { base: "", digest, sizeBytes: 0, builtMs: 0, node: "", from: "" };
      for (const ref of req.buildOn) {
        const node = await pickNode(ctx, "", ref.name);
        const client = await agentFor(ctx, node);
        const up = client.buildLayer({ layer: spec, base: ref });
        call.on("cancelled", () => up.cancel());
        let built: LayerBuild | undefined;
        // the agent's result (base@N it built on) is recorded, then sent once, below
        await pipeFrom(
          up,
          (m: OperationEvent | undefined) => m && send(m),
          (m: OperationEvent) => {
            if (m.event?.$case === "result" && m.event.result.result?.$case === "layerBuild") {
              built = {
                ...m.event.result.result.layerBuild,
                node: m.event.result.result.layerBuild.node || node,
              };
              return undefined;
            }
            return m;
          },
        ).catch((err) => {
          throw fromServiceError(err);
        });
        if (built) {
          await recordLayerBuild(s, spec.name, built);
          await s.events.emit({
            kind: "layer.built",
            subject: `layer/${spec.name}`,
            message: `built on ${built.base} on ${built.node}`,
            node: built.node,
          });
          last = built;
        }
      }
      send({ event: { $case: "result", result: { result: { $case: "layerBuild", layerBuild: last } } } });
    }),
    listLayers: unary(async () => ({ layers: (await s.layers.list()).items.map((i) => i.value.layer) })),
    getLayer: unary(
      async (req: { name: string }) => (await s.layers.mustGet(validateName("layer", req.name))).value.layer,
    ),
    deleteLayer: unary(async (req: { name: string }) => {
      validateName("layer", req.name);
      const specs = await s.envSpecs.list();
      const user = specs.items.find((i) => i.value.layers.includes(req.name));
      if (user) {
        throw failedPrecondition(`layer ${req.name} is used by env ${user.value.name}`, {
          reason: "LAYER_IN_USE",
        });
      }
      if (!(await s.layers.delete(req.name))) {
        throw notFound(`layer ${req.name} not found`, {
          reason: "LAYER_NOT_FOUND",
          subject: `layer/${req.name}`,
        });
      }
      await dropLayerBuilds(ctx, req.name);
      return {};
    }),
  };
}

/**
 * The builds of a deleted layer on the Ready nodes (builds happen lazily on any node, so each
 * is asked): best effort, the record is gone already; a node that misses it keeps an unused copy.
 */
async function dropLayerBuilds(ctx: ControllerContext, name: string): Promise<void> {
  const nodes = (await listNodes(ctx)).filter((n) => n.state === NodeState.NODE_STATE_READY);
  await Promise.all(
    nodes.map(async (n) => {
      const client = await agentFor(ctx, n.name);
      await agentCall(client.deleteLayer.bind(client), { name, base: "" }).catch((err: unknown) => {
        const pe = ProtoctlError.from(err);
        if (pe.code !== Code.NOT_FOUND)
          ctx.log.warn({ node: n.name, layer: name, err: pe.message }, "layer builds not removed");
      });
    }),
  );
}
