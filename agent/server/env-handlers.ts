/** AgentService: environments (lifecycle, listing, watch, logs) over the EnvService. */
import { invalidArgument } from "../../common/errors.js";
import { unaryHandler } from "../../common/grpc.js";
import type { AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";
import type { AgentContext } from "./context.js";
import { failStream } from "./streams.js";

type Handlers = Pick<
  AgentServiceServer,
  | "createEnv"
  | "startEnv"
  | "stopEnv"
  | "deleteEnv"
  | "getEnv"
  | "listEnvs"
  | "snapshotEnv"
  | "logs"
  | "watchEnvs"
>;

export function envHandlers(ctx: AgentContext): Handlers {
  const { envs } = ctx;
  return {
    createEnv: unaryHandler(async (req) => {
      if (!req.spec) throw invalidArgument("CreateEnv needs a spec", { reason: "SPEC_REQUIRED" });
      return envs.create(req.spec, req.generation);
    }),
    startEnv: unaryHandler((req) => envs.start(req.name)),
    stopEnv: unaryHandler((req) => envs.stop(req.name, { timeoutMs: req.timeoutMs, force: req.force })),
    deleteEnv: unaryHandler(async (req) => {
      await envs.delete(req.name);
      return {};
    }),
    getEnv: unaryHandler(async (req) => {
      const env = await envs.get(req.name);
      // live usage only here (not on every status event): two btrfs commands
      if (env.spec?.resources?.diskBytes && env.status) {
        const u = await envs.diskUsage(req.name);
        if (u) {
          env.status.diskUsedBytes = u.referenced;
          env.status.diskLimitBytes = u.maxReferenced;
        }
      }
      return env;
    }),
    listEnvs: unaryHandler(async () => ({ envs: await envs.list() })),
    snapshotEnv: unaryHandler(async (req) => ({ baseVersion: await envs.snapshot(req.name, req.asBase) })),

    logs: (call) => {
      const ac = new AbortController();
      call.on("cancelled", () => ac.abort());
      (async () => {
        const lines = envs.logs(call.request.env, {
          follow: call.request.follow,
          tailLines: call.request.tailLines || undefined,
          signal: ac.signal,
        });
        for await (const l of lines) {
          if (ac.signal.aborted) break;
          if (!call.write({ stream: l.stream, data: l.data, timeMs: l.timeMs })) {
            await new Promise((r) => call.once("drain", r));
          }
        }
        call.end();
      })().catch((err) => failStream(call, err));
    },

    watchEnvs: (call) => {
      // current state first, then every change until the client goes away
      const stop = envs.watch((env) => call.write(env));
      call.on("cancelled", stop);
      call.on("close", stop);
      envs.list().then(
        (all) => {
          for (const e of all) call.write(e);
        },
        (err) => {
          stop();
          failStream(call, err);
        },
      );
    },
  };
}
