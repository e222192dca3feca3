/**
 * AgentService.CopyIn / CopyOut (`env cp`): an env's files streamed in or out
 * through tree-copy.ts, inside the env's root whether it runs or not.
 * CopyIn's first message is the header naming env and destination.
 */
import type { ServerReadableStream, ServerWritableStream, sendUnaryData } from "@grpc/grpc-js";
import { toServiceError } from "../../common/grpc.js";
import { applyCopyStream, measureTree, readTree, TreeWriter } from "../../common/tree-copy.js";
import type { AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";
import type { CopyChunk, CopyFromRequest, CopyResult } from "../../proto/gen/protoctl/v1/types.js";
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

function receive(ctx: AgentContext, call: ServerReadableStream<CopyChunk, CopyResult>): Promise<CopyResult> {
  return applyCopyStream(call, (env, path) => new TreeWriter(ctx.envs.rootDirOf(env), path));
}

async function send(
  ctx: AgentContext,
  call: ServerWritableStream<CopyFromRequest, CopyChunk>,
): Promise<void> {
  const root = ctx.envs.rootDirOf(call.request.env);
  let gone = false;
  call.on("cancelled", () => {
    gone = true;
  });
  const totals = await measureTree(root, call.request.path);
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
  for await (const p of readTree(root, call.request.path)) {
    if (gone) return;
    if (!call.write({ part: p })) await new Promise((r) => call.once("drain", r));
  }
  call.end();
}
