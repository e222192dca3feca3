/**
 * `env cp` through the controller: CopyToEnv and CopyFromEnv are proxied as
 * streams to the agent that holds the env (its status names the node). The
 * controller never looks inside: the agent resolves paths in the env root.
 * Backpressure is passed along both ways (a slow side pauses the other).
 */
import type { ServerReadableStream, ServerWritableStream, sendUnaryData } from "@grpc/grpc-js";
import { failedPrecondition, invalidArgument, notFound } from "../../common/errors.js";
import { fromServiceError, toServiceError } from "../../common/grpc.js";
import { validateName } from "../../common/names.js";
import type { CopyChunk, CopyFromRequest, CopyResult } from "../../proto/gen/protoctl/v1/types.js";
import { agentFor } from "../agents/call.js";
import type { ControllerContext } from "../context.js";

export function copyApi(ctx: ControllerContext) {
  const nodeOf = async (env: string): Promise<string> => {
    validateName("env", env);
    const st = await ctx.store.envStatus.get(env);
    if (!st) throw notFound(`env ${env} not found`, { reason: "ENV_NOT_FOUND", subject: `env/${env}` });
    if (!st.value.node)
      throw failedPrecondition(`env ${env} is not placed on a node yet`, { reason: "ENV_NOT_PLACED" });
    return st.value.node;
  };

  return {
    copyToEnv: (call: ServerReadableStream<CopyChunk, CopyResult>, cb: sendUnaryData<CopyResult>) => {
      let done = false;
      const finish = (err: unknown, r?: CopyResult) => {
        if (done) return;
        done = true;
        if (err) cb(toServiceError(err), null);
        else cb(null, r ?? { entries: 0, bytes: 0 });
      };
      call.once("data", (first: CopyChunk) => {
        call.pause();
        (async () => {
          if (first.part?.$case !== "header")
            throw invalidArgument("a copy starts with its header", { reason: "COPY_NO_HEADER" });
          const agent = await agentFor(ctx, await nodeOf(first.part.header.env));
          const up = agent.copyIn((err, r) => finish(err ? fromServiceError(err) : undefined, r));
          up.write(first);
          call.on("data", (c: CopyChunk) => {
            if (!up.write(c)) {
              call.pause();
              up.once("drain", () => call.resume());
            }
          });
          call.on("end", () => up.end());
          call.on("cancelled", () => up.cancel());
          call.resume();
        })().catch((err) => finish(err));
      });
      call.on("error", (err) => finish(err));
    },

    copyFromEnv: (call: ServerWritableStream<CopyFromRequest, CopyChunk>) => {
      (async () => {
        const agent = await agentFor(ctx, await nodeOf(call.request.env));
        const down = agent.copyOut(call.request);
        call.on("cancelled", () => down.cancel());
        await new Promise<void>((resolve, reject) => {
          down.on("data", (c: CopyChunk) => {
            if (!call.write(c)) {
              down.pause();
              call.once("drain", () => down.resume());
            }
          });
          down.on("error", (err) => reject(fromServiceError(err)));
          down.on("end", () => resolve());
        });
        call.end();
      })().catch((err) => call.emit("error", toServiceError(err)));
    },
  };
}
