/**
 * `base import`: two ways to hand a root filesystem to the cluster.
 *
 * - Path (default when the controller is on this machine, the one-machine
 *   case): the header carries `ImportSource.dir`/`tar` as an absolute path;
 *   the agent reads it directly. No copy through gRPC.
 * - Upload (default when the controller is remote, or `--upload`, or the
 *   context's `upload: true`): `ImportSource.upload` and the tar bytes follow
 *   in chunks on the client-streaming side of ImportBase. A directory is
 *   packed on the fly with `tar -C DIR -cf - .` (numeric owners, xattrs kept).
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { Readable } from "node:stream";
import { baseRefOf } from "../../common/base-ref.js";
import { internal, invalidArgument } from "../../common/errors.js";
import type { ControlImportBaseRequest } from "../../proto/gen/protoctl/v1/control.js";
import type { BaseVersion, OperationEvent } from "../../proto/gen/protoctl/v1/types.js";
import type { Api } from "../client/connect.js";
import { isLocalAddress, type ResolvedContext } from "../config/contexts.js";
import { consumeOperation, withProgress } from "../output/progress.js";

export interface ImportArgs {
  name: string;
  dir?: string;
  tar?: string;
  /** An OCI image archive (flattened by the agent; its config gives env defaults). */
  ociArchive?: string;
  node?: string;
  /** true/false from --upload/--no-upload; undefined = decide from the context. */
  upload?: boolean;
}

const CHUNK = 1 << 20;

/** Whether to upload bytes rather than send a path. */
export function shouldUpload(ctx: ResolvedContext, flag: boolean | undefined): boolean {
  if (flag !== undefined) return flag;
  if (ctx.upload) return true;
  return !isLocalAddress(ctx.controller);
}

/** Compression named by the file's extension, for the header ("" = plain or let the agent sniff). */
export function compressionOf(file: string): string {
  if (/\.(tgz|gz)$/.test(file)) return "gzip";
  if (/\.(zst|zstd|tzst)$/.test(file)) return "zstd";
  if (/\.(xz|txz)$/.test(file)) return "xz";
  return "";
}

async function checkLocal(path: string, kind: "dir" | "tar"): Promise<string> {
  const abs = resolve(path);
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(abs);
  } catch {
    throw invalidArgument(`${kind === "dir" ? "directory" : "file"} ${abs} does not exist`, {
      reason: "FILE_NOT_FOUND",
      hint:
        kind === "dir" ? "pass the root filesystem directory with --dir" : "pass a tar archive with --tar",
    });
  }
  if (kind === "dir" && !st.isDirectory()) {
    throw invalidArgument(`${abs} is not a directory`, {
      reason: "NOT_A_DIRECTORY",
      hint: "use --tar for archives",
    });
  }
  if (kind === "tar" && !st.isFile()) {
    throw invalidArgument(`${abs} is not a file`, {
      reason: "NOT_A_FILE",
      hint: "use --dir for directories",
    });
  }
  return abs;
}

export async function importBase(api: Api, ctx: ResolvedContext, args: ImportArgs): Promise<BaseVersion> {
  const upload = shouldUpload(ctx, args.upload);
  const kind = args.dir ? "dir" : "tar";
  const oci = !args.dir && !args.tar && !!args.ociArchive;
  const path = await checkLocal((args.dir ?? args.tar ?? args.ociArchive)!, kind);
  const header = {
    name: args.name,
    node: args.node ?? "",
    // an OCI archive's layers say their own compression
    compression: kind === "tar" && !oci ? compressionOf(path) : "",
    ...(oci ? { format: "oci-archive" } : {}),
    source: upload
      ? { source: { $case: "upload" as const, upload: true } }
      : kind === "dir"
        ? { source: { $case: "dir" as const, dir: path } }
        : oci
          ? { source: { $case: "ociArchive" as const, ociArchive: path } }
          : { source: { $case: "tar" as const, tar: path } },
  };
  const title = `Importing base ${args.name} from ${path}${upload ? " (upload)" : ""}`;
  return withProgress(title, async (sink) => {
    const call = await api.duplex<ControlImportBaseRequest, OperationEvent>((c, o) => c.importBase(o));
    const events = (async function* () {
      try {
        for await (const ev of call) yield ev as OperationEvent;
      } catch (err) {
        throw api.explain(err);
      }
    })();
    const sending = (async () => {
      call.write({ part: { $case: "header", header } });
      if (upload) {
        const source =
          kind === "dir" ? await tarStream(path) : createReadStream(path, { highWaterMark: CHUNK });
        let sent = 0;
        for await (const chunk of source as AsyncIterable<Buffer>) {
          sent += chunk.length;
          if (!call.write({ part: { $case: "chunk", chunk } })) {
            await new Promise<void>((r) => call.once("drain", () => r()));
          }
          sink.progress({
            step: "uploading",
            fraction: -1,
            message: `${Math.round(sent / 1048576)} MiB sent`,
            node: "",
            bytesDone: sent,
            bytesTotal: 0,
          });
        }
      }
      call.end();
    })();
    // A failure while sending (tar failed) cancels the call; a server failure ends both.
    sending.catch(() => call.cancel());
    const [result] = await Promise.all([consumeOperation(events, sink), sending]);
    if (result?.result?.$case !== "baseVersion") {
      throw internal("the controller ended the import without a result", {
        reason: "NO_RESULT",
        hint: "see `protoctl events` and the controller's log",
      });
    }
    const v = result.result.baseVersion;
    return { value: v, done: `imported ${baseRefOf(v)}` };
  });
}

/** `tar -C dir -cf - .` as a byte stream; a tar failure rejects the iteration. */
async function tarStream(dir: string): Promise<Readable> {
  const { spawnProcess } = await import("../../common/exec.js");
  const child = spawnProcess("tar", ["-C", dir, "--numeric-owner", "--xattrs", "--acls", "-cf", "-", "."], {
    stdout: "pipe",
    stderr: "pipe",
    buffer: { stdout: false, stderr: true },
    encoding: "buffer",
  });
  const out = child.stdout!;
  child.catch((err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))));
  return out;
}
