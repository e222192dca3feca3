/**
 * `env move NAME --to NODE` as an operation (record.ts): the leader's pass
 * reads the env's status and does the next step, so a pass a dead leader
 * left half done is finished by the next one:
 *
 *   status on FROM, not Moving → write Moving (the env loop leaves it alone)
 *   Moving on FROM → stop it there; base@N usable on TO (the push hook);
 *     SendEnv(FROM) piped through this controller into ReceiveEnv(TO),
 *     `btrfs send -p base@N` first, a full stream when TO cannot find that
 *     parent (its version is an attached seed); then status → TO, Scheduled,
 *     next generation: the env loop's CreateEnv on TO adopts the received root
 *   on TO → wait until it runs there (or is created, for a spec not started),
 *     then delete the source copy: only now is the env safe on TO.
 *
 * Controller-relayed like base deltas (controller/propagation/push.ts): no
 * agent-to-agent trust is needed. A terminal failure while still on FROM
 * puts the env back to Stopped there (the env loop starts it again if its
 * spec says so); TO's half-received copy is replaced by the next receive.
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { ClientReadableStream as Up } from "@grpc/grpc-js";
import { Code, failedPrecondition, notFound, ProtoctlError } from "../../common/errors.js";
import { fromServiceError } from "../../common/grpc.js";
import type {
  AgentServiceClient,
  DeltaChunk,
  ReceiveEnvResponse,
} from "../../proto/gen/protoctl/v1/agent.js";
import { EnvPhase, type EnvStatus } from "../../proto/gen/protoctl/v1/types.js";
import { pipeChunks } from "../agents/relay.js";
import type { ControllerContext } from "../context.js";
import type { Condition } from "../store/kv.js";
import { type ClusterStore, codecs } from "../store/store.js";
import { ensureUsable } from "./push-requests.js";
import { type EnvMoveSpec, newRecord, stableOperationId } from "./record.js";

/** How long one pass waits for the env to run on its new node before the queue retries it. */
const SETTLE_MS = 5 * 60_000;

export async function envMovePass(
  ctx: ControllerContext,
  spec: EnvMoveSpec,
  fence: () => Condition[],
): Promise<void> {
  const { env, from, to } = spec;
  const store = ctx.store;
  const until = Date.now() + SETTLE_MS;
  for (;;) {
    const [specV, stV] = await Promise.all([store.envSpecs.get(env), store.envStatus.get(env)]);
    if (!specV || !stV)
      throw notFound(`env ${env} is gone`, { reason: "ENV_NOT_FOUND", subject: `env/${env}` });
    const st = stV.value;
    if (st.node === to && st.phase !== EnvPhase.ENV_PHASE_MOVING) {
      if (st.phase === EnvPhase.ENV_PHASE_FAILED || st.phase === EnvPhase.ENV_PHASE_LOST) {
        throw failedPrecondition(`env ${env} did not come up on ${to}: ${st.message}`, {
          reason: "MOVE_TARGET_FAILED",
          subject: `env/${env}`,
          hint: `its copy on ${from} is kept; see protoctl env describe ${env}`,
        });
      }
      const settled = specV.value.start
        ? st.phase === EnvPhase.ENV_PHASE_RUNNING
        : st.phase === EnvPhase.ENV_PHASE_CREATED || st.phase === EnvPhase.ENV_PHASE_STOPPED;
      if (!settled) {
        if (Date.now() > until)
          throw new ProtoctlError(Code.UNAVAILABLE, `env ${env} is not up on ${to} yet`);
        await sleep(250);
        continue;
      }
      await call<object>(await ctx.agents.forNode(store, from), "deleteEnv", { name: env }).catch(
        ignoreNotFound,
      );
      return;
    }
    if (st.node !== from) {
      throw failedPrecondition(`env ${env} is on ${st.node || "no node"}, not ${from}`, {
        reason: "ENV_MOVED",
        subject: `env/${env}`,
      });
    }
    if (st.phase !== EnvPhase.ENV_PHASE_MOVING) {
      if (
        !(await writeStatus(
          ctx,
          env,
          stV.modRevision,
          { ...st, phase: EnvPhase.ENV_PHASE_MOVING, message: `moving to ${to}` },
          fence,
        ))
      ) {
        await sleep(100);
      }
      continue;
    }
    try {
      await transfer(ctx, env, from, to, st);
    } catch (err) {
      const pe = ProtoctlError.from(err);
      if (!pe.retryable) {
        const cur = await store.envStatus.get(env);
        if (cur?.value.node === from && cur.value.phase === EnvPhase.ENV_PHASE_MOVING) {
          await writeStatus(
            ctx,
            env,
            cur.modRevision,
            {
              ...cur.value,
              phase: EnvPhase.ENV_PHASE_STOPPED,
              message: `move to ${to} failed: ${pe.message}`,
            },
            fence,
          );
        }
      }
      throw pe;
    }
    const next: EnvStatus = {
      ...st,
      phase: EnvPhase.ENV_PHASE_SCHEDULED,
      node: to,
      generation: st.generation + 1,
      startedMs: 0,
      leaderPid: 0,
      addresses: [],
      message: `moved from ${from}`,
    };
    await writeStatus(ctx, env, stV.modRevision, next, fence, `moved from ${from} to ${to}`);
  }
}

async function transfer(
  ctx: ControllerContext,
  env: string,
  from: string,
  to: string,
  st: EnvStatus,
): Promise<void> {
  const src = await ctx.agents.forNode(ctx.store, from);
  const dst = await ctx.agents.forNode(ctx.store, to);
  await call(src, "stopEnv", { name: env, timeoutMs: 10_000, force: false });
  const base = (await ctx.store.envSpecs.get(env))?.value.base?.name ?? "";
  await ensureUsable(ctx.store, to, base, st.baseVersion);
  try {
    await relay(src.sendEnv({ name: env, withParent: true }), dst);
  } catch (err) {
    const pe = ProtoctlError.from(err);
    if (pe.reason !== "PARENT_MISSING" && pe.reason !== "STREAM_REJECTED") throw pe;
    ctx.log.info(
      { env, from, to, reason: pe.reason },
      "env move: incremental stream refused, sending in full",
    );
    await relay(src.sendEnv({ name: env, withParent: false }), dst);
  }
}

/** Pipes SendEnv into ReceiveEnv with back-pressure; resolves when the target has it. */
function relay(up: Up<DeltaChunk>, dst: AgentServiceClient): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const down = dst.receiveEnv((err: unknown, _res?: ReceiveEnvResponse) =>
      err ? reject(fromServiceError(err as never)) : resolve(),
    ) as unknown as {
      write(c: DeltaChunk): boolean;
      once(e: "drain", f: () => void): void;
      end(): void;
      cancel(): void;
    };
    pipeChunks(up, down, (e) => reject(fromServiceError(e as never)));
  });
}

async function writeStatus(
  ctx: ControllerContext,
  env: string,
  modRevision: number,
  next: EnvStatus,
  fence: () => Condition[],
  moved?: string,
): Promise<boolean> {
  const store = ctx.store;
  const key = store.keys.envStatus(env);
  const writes = [{ op: "put" as const, key, value: codecs.envStatus.encode(next) }];
  if (moved) {
    writes.push(
      (await store.events.write({
        kind: "env.moved",
        subject: `env/${env}`,
        message: moved,
        node: next.node,
      })) as never,
    );
  }
  const r = await store.kv.commit({ conditions: [{ key, modRevision }, ...fence()], writes });
  return r.succeeded;
}

function call<Res>(client: AgentServiceClient, method: "stopEnv" | "deleteEnv", req: object): Promise<Res> {
  return new Promise<Res>((resolve, reject) =>
    (client[method] as unknown as (r: object, cb: (err: unknown, res: Res) => void) => void).call(
      client,
      req,
      (err, res) => (err ? reject(fromServiceError(err as never)) : resolve(res)),
    ),
  );
}

function ignoreNotFound(err: unknown): void {
  const pe = ProtoctlError.from(err);
  if (pe.code !== Code.NOT_FOUND) throw pe;
}

/**
 * Writes the move record unless one for the same env and source is there (a
 * repeated ask follows it). A finished one is replaced, except a failed one
 * when `keepFailed` (a drain then recreates the env instead of looping):
 * answers undefined.
 */
export async function requestMove(
  store: ClusterStore,
  env: string,
  from: string,
  to: string,
  keepFailed = false,
): Promise<string | undefined> {
  const id = stableOperationId("env-move", env, from);
  const cur = await store.operations.get(id);
  if (cur && cur.value.status.phase !== "succeeded" && cur.value.status.phase !== "failed") return id;
  if (cur?.value.status.phase === "failed" && keepFailed) return undefined;
  if (cur) await store.operations.delete(id);
  await store.operations
    .create(id, newRecord({ kind: "env-move", envMove: { env, from, to } }))
    .catch(async (err) => {
      if (!(await store.operations.get(id))) throw err;
    });
  return id;
}
