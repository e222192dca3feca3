/**
 * AgentService: propagation (seed images over NBD, btrfs send deltas).
 * `propagationHandlers(ctx, svc)` serves them over a PropagationService
 * (service/propagation-service.ts); without one, `startAgentServer` answers
 * UNIMPLEMENTED.
 */
import { Readable } from "node:stream";
import {
  type ServerErrorResponse,
  type ServerReadableStream,
  type ServerWritableStream,
  status,
} from "@grpc/grpc-js";
import { invalidArgument } from "../../common/errors.js";
import { toServiceError, unaryHandler } from "../../common/grpc.js";
import { validateName } from "../../common/names.js";
import type { AgentServiceServer, DeltaChunk, SendDeltaRequest } from "../../proto/gen/protoctl/v1/agent.js";
import {
  type Attachment,
  AttachmentPhase,
  type BaseVersion,
  type Export,
  type SeedImage,
} from "../../proto/gen/protoctl/v1/types.js";
import type { AttachmentState } from "../host/attachments/types.js";
import type { BaseVersionMeta } from "../host/interfaces.js";
import { receiveVersionStream, sendVersion } from "../service/delta-stream.js";
import type { PropagationService } from "../service/propagation-service.js";
import type { AttachmentInfo, ExportInfo, SeedRecord } from "../service/propagation-types.js";
import type { AgentContext } from "./context.js";
import { baseVersionMsg } from "./convert.js";
import { failStream, operationStream, writeDeltaData } from "./streams.js";

export type PropagationHandlers = Pick<
  AgentServiceServer,
  | "publishSeed"
  | "serveExport"
  | "stopExport"
  | "attach"
  | "getAttachment"
  | "detach"
  | "sendDelta"
  | "receiveDelta"
  | "deleteSeed"
>;

function unimplemented(method: string) {
  return Object.assign(new Error(`${method} is not implemented on this agent yet`), {
    code: status.UNIMPLEMENTED,
    details: `${method} is not implemented on this agent yet`,
  });
}

export function unimplementedPropagation(): PropagationHandlers {
  // one stub serves every unary signature: it answers with an error only
  const unary = (m: string) => (_call: unknown, cb: (err: ServerErrorResponse) => void) =>
    cb(unimplemented(m));
  const stream = (m: string) => (call: { emit(e: "error", err: unknown): boolean }) => {
    call.emit("error", unimplemented(m));
  };
  return {
    publishSeed: stream("PublishSeed"),
    serveExport: unary("ServeExport"),
    stopExport: unary("StopExport"),
    attach: stream("Attach"),
    getAttachment: unary("GetAttachment"),
    detach: unary("Detach"),
    sendDelta: stream("SendDelta"),
    receiveDelta: unary("ReceiveDelta"),
    deleteSeed: unary("DeleteSeed"),
  };
}

// ---------------------------------------------------------------- real handlers

/** Wire shapes of the propagation objects (pure). */
export const PHASES: Record<AttachmentState["phase"], AttachmentPhase> = {
  attaching: AttachmentPhase.ATTACHMENT_PHASE_ATTACHING,
  attached: AttachmentPhase.ATTACHMENT_PHASE_ATTACHED,
  hydrating: AttachmentPhase.ATTACHMENT_PHASE_HYDRATING,
  local: AttachmentPhase.ATTACHMENT_PHASE_LOCAL,
  failed: AttachmentPhase.ATTACHMENT_PHASE_FAILED,
};

export function attachmentMsg(a: AttachmentInfo, node: string): Attachment {
  const s = a.state;
  return {
    base: a.base,
    version: a.version,
    node,
    sourceNode: a.sourceNode,
    uri: s.uri,
    phase: PHASES[s.phase],
    hydratedFraction: s.phase === "local" ? 1 : s.sizeBytes ? s.hydratedBytes / s.sizeBytes : 0,
    message: s.message,
    transport: "seed",
    checksum: a.checksum,
  };
}

export function exportMsg(e: ExportInfo, node: string): Export {
  return {
    base: e.base,
    version: e.version,
    node,
    uri: e.uri,
    maxClients: e.maxClients,
    clients: 0,
    allow: e.allow,
  };
}

export function seedMsg(s: SeedRecord): SeedImage {
  return {
    base: s.base,
    version: s.version,
    sizeBytes: s.sizeBytes,
    checksum: s.checksum,
    node: s.node,
    createdMs: s.createdMs,
    publishedAtSeal: !!s.atSeal,
  };
}

/** Delta stream chunks are coalesced up to this size (fewer, larger gRPC messages). */
const DELTA_CHUNK = 1 << 20;

/** AgentService propagation handlers over a PropagationService. */
export function propagationHandlers(ctx: AgentContext, svc: PropagationService): PropagationHandlers {
  const node = ctx.node;
  const ref = (r: { name: string; version: number } | undefined) => {
    const base = validateName("base", r?.name);
    return { base, version: r?.version ?? 0 };
  };
  return {
    publishSeed: (call) => {
      operationStream(call, async (progress, signal) => {
        const { base, version } = ref(call.request.ref);
        const { rec, atSeal } = await svc.publish(base, version, progress, signal);
        return { result: { $case: "seed", seed: { ...seedMsg(rec), publishedAtSeal: atSeal } } };
      });
    },
    serveExport: unaryHandler(async (req) => {
      const { base, version } = ref(req.ref);
      const v = version || (await ctx.pool.getBaseVersion(base, 0)).version;
      const info = await svc.serve(base, v, {
        port: req.port,
        maxClients: req.maxClients,
        allow: req.allow,
      });
      return exportMsg(info, node);
    }),
    stopExport: unaryHandler(async (req) => {
      const { base, version } = ref(req.ref);
      await svc.stopExport(base, version);
      return {};
    }),
    attach: (call) => {
      operationStream(call, async (progress) => {
        const r = call.request;
        const { base, version } = ref(r.ref);
        if (!r.seed) throw invalidArgument("attach needs the seed's size and checksum");
        const a = await svc.attach(
          {
            base,
            version,
            uri: r.uri,
            seed: { sizeBytes: Number(r.seed.sizeBytes), checksum: r.seed.checksum, subvolume: "root" },
            sourceNode: r.sourceNode,
            hydrate: r.hydrate,
          },
          progress,
        );
        return { result: { $case: "attachment", attachment: attachmentMsg(a, node) } };
      });
    },
    deleteSeed: unaryHandler(async (req) => {
      const { base, version } = ref(req.ref);
      await svc.deleteSeed(base, version);
      return {};
    }),
    getAttachment: unaryHandler(async (req) => {
      const { base, version } = ref(req.ref);
      return attachmentMsg(await svc.get(base, version), node);
    }),
    detach: unaryHandler(async (req) => {
      const { base, version } = ref(req.ref);
      await svc.detach(base, version);
      return {};
    }),
    sendDelta: (call: ServerWritableStream<SendDeltaRequest, DeltaChunk>) => {
      (async () => {
        const { base, version } = ref(call.request.ref);
        const meta = await ctx.pool.getBaseVersion(base, version);
        const pv = call.request.parentVersion;
        const sender = await sendVersion(svc, meta.base, meta.version, pv);
        call.on("cancelled", () => sender.cancel());
        call.write({
          part: {
            $case: "header",
            header: {
              base: meta.base,
              version: meta.version,
              parentVersion: pv,
              meta: baseVersionMsg(meta, node),
              env: "",
              envPart: "",
            },
          },
        });
        await writeDeltaData(call, sender.stream, DELTA_CHUNK);
        await sender.done;
        call.end();
      })().catch((err) => failStream(call, err));
    },
    receiveDelta: (call: ServerReadableStream<DeltaChunk, BaseVersion>, callback) => {
      (async () => {
        const it = call[Symbol.asyncIterator]() as AsyncIterator<DeltaChunk>;
        const first = await it.next();
        const header =
          !first.done && first.value.part?.$case === "header" ? first.value.part.header : undefined;
        if (!header?.meta)
          throw invalidArgument("ReceiveDelta starts with a header", { reason: "HEADER_REQUIRED" });
        const base = validateName("base", header.base);
        const m = header.meta;
        const meta: BaseVersionMeta = {
          base,
          version: header.version,
          source: m.source,
          createdMs: Number(m.createdMs),
          recipeDigest: m.recipeDigest,
          sizeBytes: Number(m.sizeBytes),
          ...(m.parent ? { parent: m.parent } : {}),
          ...(m.image ? { image: m.image } : {}),
        };
        const have = await ctx.pool.getBaseVersion(base, header.version).catch(() => undefined);
        if (have) return baseVersionMsg(have, node);
        const stream = Readable.from(
          (async function* () {
            for (;;) {
              const n = await it.next();
              if (n.done) return;
              if (n.value.part?.$case === "data") yield Buffer.from(n.value.part.data);
            }
          })(),
        );
        const got = await receiveVersionStream(svc, meta, stream, header.parentVersion);
        svc.onChange();
        return baseVersionMsg(got, node);
      })().then(
        (res) => callback(null, res),
        (err) => callback(toServiceError(err)),
      );
    },
  };
}
