/**
 * AgentService: env move. SendEnv streams a stopped env's writable part
 * (pool/env-transfer.ts) as DeltaChunks, a header first; ReceiveEnv takes
 * such a stream into the pool, where the next CreateEnv of that name adopts
 * it. The controller pipes one into the other (controller/operations/env-move-pass.ts).
 */
import { Readable } from "node:stream";
import type { ServerReadableStream, ServerWritableStream } from "@grpc/grpc-js";
import { Code, failedPrecondition, invalidArgument, ProtoctlError } from "../../common/errors.js";
import { toServiceError } from "../../common/grpc.js";
import type {
  AgentServiceServer,
  DeltaChunk,
  ReceiveEnvResponse,
  SendEnvRequest,
} from "../../proto/gen/protoctl/v1/agent.js";
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { AgentContext } from "./context.js";
import { failStream, writeDeltaData } from "./streams.js";

const CHUNK = 1 << 20;

type Handlers = Pick<AgentServiceServer, "sendEnv" | "receiveEnv">;

function unimplemented(): ProtoctlError {
  return new ProtoctlError(Code.UNIMPLEMENTED, "this node's pool cannot move envs", {
    reason: "MOVE_UNSUPPORTED",
  });
}

export function moveHandlers(ctx: AgentContext): Handlers {
  return {
    sendEnv: (call: ServerWritableStream<SendEnvRequest, DeltaChunk>) => {
      (async () => {
        const { pool, envs } = ctx;
        if (!pool.sendEnvRoot) throw unimplemented();
        const env = await envs.get(call.request.name);
        if (env.status?.phase === EnvPhase.ENV_PHASE_RUNNING) {
          throw failedPrecondition(`env ${call.request.name} is running: stop it before it moves`, {
            reason: "ENV_RUNNING",
            subject: `env/${call.request.name}`,
          });
        }
        const s = await pool.sendEnvRoot(call.request.name, call.request.withParent);
        call.on("cancelled", () => s.cancel());
        call.write({
          part: {
            $case: "header",
            header: {
              base: s.base,
              version: s.version,
              parentVersion: s.parentVersion,
              env: call.request.name,
              envPart: s.part,
              meta: undefined,
            },
          },
        });
        await writeDeltaData(call, s.stream, CHUNK);
        await s.done;
        call.end();
      })().catch((err) => failStream(call, err));
    },
    receiveEnv: (call: ServerReadableStream<DeltaChunk, ReceiveEnvResponse>, callback) => {
      (async () => {
        const { pool } = ctx;
        if (!pool.receiveEnvRoot) throw unimplemented();
        const it = call[Symbol.asyncIterator]() as AsyncIterator<DeltaChunk>;
        const first = await it.next();
        const h = !first.done && first.value.part?.$case === "header" ? first.value.part.header : undefined;
        if (!h?.env)
          throw invalidArgument("ReceiveEnv starts with a header naming the env", {
            reason: "HEADER_REQUIRED",
          });
        const stream = Readable.from(
          (async function* () {
            for (;;) {
              const n = await it.next();
              if (n.done) return;
              if (n.value.part?.$case === "data") yield Buffer.from(n.value.part.data);
            }
          })(),
        );
        await pool.receiveEnvRoot(
          { name: h.env, base: h.base, version: h.version, parentVersion: h.parentVersion, part: h.envPart },
          stream,
        );
        return {};
      })().then(
        (res) => callback(null, res),
        (err) => callback(toServiceError(err)),
      );
    },
  };
}
