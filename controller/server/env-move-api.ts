/**
 * `MoveEnv`: writes an env-move operation (controller/operations/env-move-pass.ts)
 * and follows it to its end, like base deletion. The env is stopped for the
 * move (no live migration: `live` is refused) and started on the target
 * again if its spec says so.
 */
import { failedPrecondition, invalidArgument, notFound } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import type { MoveEnvRequest } from "../../proto/gen/protoctl/v1/control.js";
import type { Env } from "../../proto/gen/protoctl/v1/types.js";
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { requestMove } from "../operations/env-move-pass.js";
import { followOperation, fromStoredError } from "../operations/follow.js";
import { unary } from "./handlers.js";

export function envMoveApi(ctx: ControllerContext, getEnv: (name: string) => Promise<Env>) {
  return {
    moveEnv: unary(async (req: MoveEnvRequest) => {
      const name = validateName("env", req.name);
      const to = validateName("node", req.to);
      if (req.live) {
        throw invalidArgument("live move is not supported: the env is stopped, moved, and started again", {
          reason: "LIVE_MOVE_UNSUPPORTED",
          hint: `protoctl env move ${name} --to ${to} (without --live)`,
        });
      }
      const st = await ctx.store.envStatus.get(name);
      if (!st || !(await ctx.store.envSpecs.get(name))) {
        throw notFound(`env ${name} not found`, { reason: "ENV_NOT_FOUND", subject: `env/${name}` });
      }
      const from = st.value.node;
      if (from === to && st.value.phase !== EnvPhase.ENV_PHASE_MOVING) return getEnv(name);
      const movable = [
        EnvPhase.ENV_PHASE_RUNNING,
        EnvPhase.ENV_PHASE_STOPPED,
        EnvPhase.ENV_PHASE_CREATED,
        EnvPhase.ENV_PHASE_MOVING,
      ];
      if (!from || !movable.includes(st.value.phase)) {
        throw failedPrecondition(`env ${name} is ${EnvPhase[st.value.phase]}: only a created env moves`, {
          reason: "ENV_NOT_MOVABLE",
          subject: `env/${name}`,
        });
      }
      const node = await ctx.store.nodes.get(to);
      if (!node) throw notFound(`node ${to} not found`, { reason: "NODE_NOT_FOUND", subject: `node/${to}` });
      const id = (await requestMove(ctx.store, name, from, to))!;
      const rec = await followOperation(
        ctx.store,
        id,
        (r) => r.status.phase === "succeeded" || r.status.phase === "failed",
      );
      if (rec.status.phase === "failed" && rec.status.error) throw fromStoredError(rec.status.error);
      return getEnv(name);
    }),
  };
}
