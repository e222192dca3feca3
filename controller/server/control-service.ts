/**
 * The ControlService as served by every replica: the RPC groups assembled,
 * plus version and the event stream. Who may call what: authz.ts, enforced by auth-interceptor.ts.
 */
import { Code, ProtoctlError } from "../../common/errors.js";
import { toServiceError } from "../../common/grpc.js";
import type { ControlServiceServer, WatchEventsRequest } from "../../proto/gen/protoctl/v1/control.js";
import type { Event } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import type { IdentityDirectory } from "../users/directory.js";
import { userApi } from "../users/user-api.js";
import { baseApi, layerApi } from "./base-api.js";
import { copyApi } from "./copy-api.js";
import { envApi } from "./env-api.js";
import type { EnvStatusWaiter } from "./env-watch.js";
import { serverStream, unary } from "./handlers.js";
import { labApi } from "./lab-api.js";
import { nodeApi } from "./node-api.js";

export const CONTROLLER_VERSION = "0.1.0";

export function controlService(
  ctx: ControllerContext,
  waiter: EnvStatusWaiter,
  clusterId: () => string,
  directory: IdentityDirectory,
): ControlServiceServer {
  // Typed against the generated service: the compiler checks every handler's request and reply types.
  return {
    getVersion: unary(async () => ({
      version: CONTROLLER_VERSION,
      controller: ctx.id,
      leader: ctx.leader.leaderId(),
      cluster: clusterId(),
      consoleUrl: ctx.consoleUrl ?? "",
    })),
    ...nodeApi(ctx),
    ...baseApi(ctx),
    ...layerApi(ctx),
    ...envApi(ctx, waiter),
    ...copyApi(ctx),
    ...labApi(ctx, waiter),
    ...userApi(ctx, directory),

    watchEvents: serverStream<WatchEventsRequest, Event>(async (req, send, call) => {
      const match = (e: Event) => req.kinds.length === 0 || req.kinds.some((k) => e.kind.startsWith(k));
      const { events, revision } = await ctx.store.events.list(req.sinceRevision);
      for (const e of events) if (match(e)) send(e);
      const cancel = await ctx.store.events.watch(
        revision + 1,
        (evs) => {
          for (const e of evs) if (match(e)) send(e);
        },
        (err) => call.emit("error", toServiceError(new ProtoctlError(Code.UNAVAILABLE, err.message))),
      );
      await new Promise<void>((resolve) => call.on("cancelled", resolve));
      await cancel();
    }),
  };
}
