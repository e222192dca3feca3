/** AgentService: bases and layers, wire ↔ BaseService; long work streams OperationEvents. */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { invalidArgument } from "../../common/errors.js";
import { unaryHandler } from "../../common/grpc.js";
import { validateName } from "../../common/names.js";
import type {
  AgentServiceServer,
  BuildBaseRequest,
  ImportBaseRequest,
} from "../../proto/gen/protoctl/v1/agent.js";
import { type OperationEvent, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
import type { BaseService, BaseSource, BuildSpec } from "../service/base-service.js";
import { baseVersionMsg, layerBuildMsg, layersMsg } from "./convert.js";
import { failStream, operationStream } from "./streams.js";

type Handlers = Pick<
  AgentServiceServer,
  | "listBases"
  | "importBase"
  | "buildBase"
  | "updateBase"
  | "deleteBaseVersion"
  | "buildLayer"
  | "listLayers"
  | "deleteLayer"
>;

export function baseHandlers(bases: BaseService, node: string): Handlers {
  return {
    listBases: unaryHandler(async (req) => ({
      bases: (await bases.list(req.name || undefined)).map((g) => ({
        name: g.name,
        latest: g.latest,
        versions: g.versions.map((v) => baseVersionMsg(v.meta, node, [], v.held)),
      })),
    })),

    importBase: (call: ServerDuplexStream<ImportBaseRequest, OperationEvent>) => {
      importBase(bases, node, call).catch((err) => failStream(call, err));
    },

    buildBase: (call) => {
      operationStream(call, async (progress, signal) => {
        const meta = await bases.build(call.request.name, buildSpec(call.request), progress, signal);
        return { result: { $case: "baseVersion", baseVersion: baseVersionMsg(meta, node) } };
      });
    },

    updateBase: (call) => {
      operationStream(call, async (progress, signal) => {
        const r = call.request;
        const opts = { network: r.network, script: r.script.length ? r.script : undefined };
        const meta = await bases.update(r.name, r.command, opts, progress, signal);
        return { result: { $case: "baseVersion", baseVersion: baseVersionMsg(meta, node) } };
      });
    },

    deleteBaseVersion: unaryHandler(async (req) => {
      const deleted = await bases.deleteVersion(req.ref?.name, req.ref?.version ?? 0);
      return { deleted: deleted.map((m) => baseVersionMsg(m, node)) };
    }),

    buildLayer: (call) => {
      operationStream(call, async (progress, signal) => {
        const l = call.request.layer;
        const recipe = l?.recipe;
        const name = validateName("layer", l?.name);
        validateName("base", call.request.base?.name);
        if (!recipe) throw invalidArgument("a layer needs a recipe", { reason: "RECIPE_REQUIRED" });
        const spec = {
          name,
          kind: recipe.kind === RecipeKind.RECIPE_KIND_ANSIBLE ? ("ansible" as const) : ("shell" as const),
          main: recipe.main,
          files: recipe.files.map((f) => ({ path: f.path, content: f.content, mode: f.mode })),
          parents: l.parents,
        };
        const base = call.request.base;
        const meta = await bases.buildLayer(spec, base?.name, base?.version ?? 0, progress, signal);
        return { result: { $case: "layerBuild", layerBuild: layerBuildMsg(meta, node) } };
      });
    },

    listLayers: unaryHandler(async () => ({ layers: layersMsg(await bases.listLayers(), node) })),

    deleteLayer: unaryHandler(async (req) => {
      await bases.deleteLayer(req.name, req.base || undefined);
      return {};
    }),
  };
}

function buildSpec(req: BuildBaseRequest): BuildSpec | undefined {
  validateName("base", req.name);
  const b = req.spec?.builder;
  if (!b) return undefined;
  if (b.$case !== "debootstrap") return { script: b.script };
  const d = b.debootstrap;
  return {
    debootstrap: {
      suite: d.suite,
      variant: d.variant || undefined,
      packages: d.packages,
      mirror: d.mirror || undefined,
    },
  };
}

/** First message: the header; for uploads, tar bytes follow (BaseService bounds and stores them). */
async function importBase(
  bases: BaseService,
  node: string,
  call: ServerDuplexStream<ImportBaseRequest, OperationEvent>,
): Promise<void> {
  const it = call[Symbol.asyncIterator]() as AsyncIterator<ImportBaseRequest>;
  const first = await it.next();
  const header = !first.done && first.value.part?.$case === "header" ? first.value.part.header : undefined;
  if (!header) throw invalidArgument("ImportBase starts with a header", { reason: "HEADER_REQUIRED" });
  const name = validateName("base", header.name);
  const src = header.source?.source;
  if (!src) throw invalidArgument("ImportBase needs a source", { reason: "SOURCE_REQUIRED" });
  let upload: string | undefined;
  try {
    let source: BaseSource;
    const oci = header.format === "oci-archive";
    if (header.format && !oci) {
      throw invalidArgument(`unknown import format ${JSON.stringify(header.format)}`, {
        reason: "BAD_FORMAT",
      });
    }
    if (src.$case === "upload") {
      upload = await bases.receiveUpload(name, header.compression, chunks(it), oci);
      source = oci ? { ociArchive: upload } : { tar: upload };
    } else if (src.$case === "ociArchive") {
      source = { ociArchive: src.ociArchive };
    } else {
      if (oci) throw invalidArgument("an OCI archive is imported from a file", { reason: "BAD_FORMAT" });
      source = src.$case === "dir" ? { dir: src.dir } : { tar: src.tar };
    }
    await new Promise<void>((resolve) => {
      operationStream(call, async (progress, signal) => {
        try {
          const meta = await bases.import(name, source, progress, signal);
          return { result: { $case: "baseVersion", baseVersion: baseVersionMsg(meta, node) } };
        } finally {
          resolve();
        }
      });
    });
  } finally {
    await bases.discardUpload(upload);
  }
}

/** The upload's chunks, the rest of the request stream. */
async function* chunks(it: AsyncIterator<ImportBaseRequest>): AsyncIterable<Uint8Array> {
  for (;;) {
    const m = await it.next();
    if (m.done) return;
    if (m.value.part?.$case === "chunk") yield m.value.part.chunk;
  }
}
