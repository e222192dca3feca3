/** AgentService: bases and layers, delegated to the pool; long work streams OperationEvents. */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { invalidArgument, resourceExhausted } from "../../common/errors.js";
import { unaryHandler } from "../../common/grpc.js";
import { validateName } from "../../common/names.js";
import type { AgentServiceServer, ImportBaseRequest } from "../../proto/gen/protoctl/v1/agent.js";
import { type Base, type OperationEvent, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
import type { AgentContext } from "./context.js";
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

const UPLOAD_EXT: Record<string, string> = { "": ".tar", gzip: ".tar.gz", zstd: ".tar.zst", xz: ".tar.xz" };

export function baseHandlers(ctx: AgentContext, stateDir: string, maxUploadBytes = 0): Handlers {
  const { pool, node } = ctx;
  return {
    listBases: unaryHandler(async (req) => {
      const versions = await pool.listBaseVersions(req.name || undefined);
      const by = new Map<string, Base>();
      for (const v of versions) {
        let b = by.get(v.base);
        if (!b) {
          b = { name: v.base, versions: [], latest: 0 };
          by.set(v.base, b);
        }
        b.versions.push(
          baseVersionMsg(v, node, [], ctx.propagation?.heldState(v.base, v.version) ?? "local"),
        );
        b.latest = Math.max(b.latest, v.version);
      }
      return { bases: [...by.values()].sort((a, b) => a.name.localeCompare(b.name)) };
    }),

    importBase: (call: ServerDuplexStream<ImportBaseRequest, OperationEvent>) => {
      importBase(ctx, stateDir, call, maxUploadBytes).catch((err) => failStream(call, err));
    },

    buildBase: (call) => {
      operationStream(call, async (progress, signal) => {
        const name = validateName("base", call.request.name);
        const b = call.request.spec?.builder;
        if (!b)
          throw invalidArgument("build needs a debootstrap spec or a script", {
            reason: "BUILD_SPEC_REQUIRED",
          });
        const spec =
          b.$case === "debootstrap"
            ? {
                debootstrap: {
                  suite: b.debootstrap.suite,
                  variant: b.debootstrap.variant || undefined,
                  packages: b.debootstrap.packages,
                  mirror: b.debootstrap.mirror || undefined,
                },
              }
            : { script: b.script };
        const meta = await pool.buildBase(name, spec, progress, signal);
        ctx.propagation?.sealed(meta);
        return { result: { $case: "baseVersion", baseVersion: baseVersionMsg(meta, node) } };
      });
    },

    updateBase: (call) => {
      operationStream(call, async (progress, signal) => {
        const r = call.request;
        const name = validateName("base", r.name);
        const meta = await pool.updateBase(
          name,
          r.command,
          { network: r.network, script: r.script.length ? r.script : undefined },
          progress,
          signal,
        );
        ctx.propagation?.sealed(meta);
        return { result: { $case: "baseVersion", baseVersion: baseVersionMsg(meta, node) } };
      });
    },

    deleteBaseVersion: unaryHandler(async (req) => {
      const name = validateName("base", req.ref?.name);
      // A publish begun at seal reads the subvolume (btrfs send): it stops first.
      await ctx.propagation?.beforeDelete(name, req.ref?.version ?? 0);
      const deleted = await pool.deleteBaseVersion(name, req.ref?.version ?? 0);
      return { deleted: deleted.map((m) => baseVersionMsg(m, node)) };
    }),

    buildLayer: (call) => {
      operationStream(call, async (progress, signal) => {
        const l = call.request.layer;
        const name = validateName("layer", l?.name);
        const baseName = validateName("base", call.request.base?.name);
        const recipe = l?.recipe;
        if (!recipe) throw invalidArgument("a layer needs a recipe", { reason: "RECIPE_REQUIRED" });
        const meta = await pool.buildLayer(
          {
            name,
            kind: recipe.kind === RecipeKind.RECIPE_KIND_ANSIBLE ? "ansible" : "shell",
            main: recipe.main,
            files: recipe.files.map((f) => ({ path: f.path, content: f.content, mode: f.mode })),
            parents: l.parents,
          },
          baseName,
          call.request.base?.version ?? 0,
          progress,
          signal,
        );
        return { result: { $case: "layerBuild", layerBuild: layerBuildMsg(meta, node) } };
      });
    },

    listLayers: unaryHandler(async () => ({ layers: layersMsg(await pool.listLayerBuilds(), node) })),

    deleteLayer: unaryHandler(async (req) => {
      await pool.deleteLayer(validateName("layer", req.name), req.base || undefined);
      return {};
    }),
  };
}

/** First message: the header; for uploads, tar bytes follow and land in a temp file first. */
async function importBase(
  ctx: AgentContext,
  stateDir: string,
  call: ServerDuplexStream<ImportBaseRequest, OperationEvent>,
  maxUploadBytes: number,
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
    let source: { dir: string } | { tar: string };
    if (src.$case === "upload") {
      const ext = UPLOAD_EXT[header.compression];
      if (!ext) throw invalidArgument(`unknown compression ${JSON.stringify(header.compression)}`);
      const dir = join(stateDir, "uploads");
      await mkdir(dir, { recursive: true });
      upload = join(dir, `${name}-${randomBytes(6).toString("hex")}${ext}`);
      const out = createWriteStream(upload, { mode: 0o600 });
      // the temp file sits on the agent's state disk, not in the pool: bound it (a tar larger
      // than the pool cannot be imported anyway)
      const limit = maxUploadBytes > 0 ? maxUploadBytes : await poolBytes(ctx);
      let received = 0;
      for (;;) {
        const m = await it.next();
        if (m.done) break;
        if (m.value.part?.$case !== "chunk") continue;
        received += m.value.part.chunk.length;
        if (received > limit) {
          out.destroy();
          throw resourceExhausted(`the upload of base ${name} is larger than ${limit} bytes`, {
            reason: "UPLOAD_TOO_LARGE",
            subject: `base/${name}`,
            metadata: { limitBytes: String(limit) },
          });
        }
        if (!out.write(m.value.part.chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
      }
      await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
      source = { tar: upload };
    } else {
      source = src.$case === "dir" ? { dir: src.dir } : { tar: src.tar };
    }
    await new Promise<void>((resolve) => {
      operationStream(call, async (progress, signal) => {
        try {
          const meta = await ctx.pool.importBase(name, source, progress, signal);
          ctx.propagation?.sealed(meta);
          return { result: { $case: "baseVersion", baseVersion: baseVersionMsg(meta, ctx.node) } };
        } finally {
          resolve();
        }
      });
    });
  } finally {
    if (upload) await rm(upload, { force: true });
  }
}

/** The pool's total size: the default bound on one upload. */
async function poolBytes(ctx: AgentContext): Promise<number> {
  return (await ctx.pool.capacity()).sizeBytes;
}
