/**
 * AgentService.CopyIn / CopyOut (`env cp`): an env's files streamed in or out
 * through tree-copy.ts, inside the env's root whether it runs or not (a
 * running env through its leader's root: copy-root.ts).
 * CopyIn's first message is the header naming env and destination.
 */
import type { ServerReadableStream, ServerWritableStream, sendUnaryData } from "@grpc/grpc-js";
import { toServiceError } from "../../common/grpc.js";
import { applyCopyStream, measureTree, readTree, TreeWriter } from "../../common/tree-copy.js";
import type { AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";
import type { CopyChunk, CopyFromRequest, CopyResult } from "../../proto/gen/protoctl/v1/types.js";
import { type CopyRoot, copyRootOf } from "../service/copy-root.js";
import type { AgentContext } from "./context.js";
import { failStream } from "./streams.js";

export function copyHandlers(ctx: AgentContext): Pick<AgentServiceServer, "copyIn" | "copyOut"> {
  return {
    copyIn: (call: ServerReadableStream<CopyChunk, CopyResult>, cb: sendUnaryData<CopyResult>) => {
      receive(ctx, call).then(
        (r) => cb(null, r),
        (err) => cb(toServiceError(err), null),
      );
    },
    copyOut: (call: ServerWritableStream<CopyFromRequest, CopyChunk>) => {
      send(ctx, call).catch((err) => failStream(call, err));
    },
  };
}

async function receive(
  ctx: AgentContext,
  call: ServerReadableStream<CopyChunk, CopyResult>,
): Promise<CopyResult> {
  let where: CopyRoot | undefined;
  try {
    return await applyCopyStream(call, async (env, path) => {
      where = await copyRootOf(ctx.envs, env, { write: true });
      return new TreeWriter(where.root, path, true, where.access);
    });
  } finally {
    await where?.close();
  }
}

async function send(
  ctx: AgentContext,
  call: ServerWritableStream<CopyFromRequest, CopyChunk>,
): Promise<void> {
  const where = await copyRootOf(ctx.envs, call.request.env, { write: false });
  try {
    await sendFrom(where, call);
  } finally {
    await where.close();
  }
}

async function sendFrom(
  where: CopyRoot,
  call: ServerWritableStream<CopyFromRequest, CopyChunk>,
): Promise<void> {
  const { root } = where;
  const ids = where.access?.ids;
  let gone = false;
  call.on("cancelled", () => {
    gone = true;
  });
  const totals = await measureTree(root, call.request.path, ids);
  call.write({
    part: {
      $case: "header",
      header: {
        env: call.request.env,
        path: call.request.path,
        totalBytes: totals.bytes,
        totalEntries: totals.entries,
      },
    },
  });
  for await (const p of readTree(root, call.request.path, ids)) {
    if (gone) return;
    if (!call.write({ part: p })) await new Promise((r) => call.once("drain", r));
  }
  call.end();
}
