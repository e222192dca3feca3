/**
 * Env RPCs. Writes record desired state only (the spec, in its own key, so
 * the leader's status writes never clobber it); the leader's loop converges.
 * `wait=true` waits on the shared status watch. Exec and logs are proxied to
 * the env's agent as streams.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { checkEnvCommand } from "../../common/env-command.js";
import { checkSpecFields } from "../../common/env-spec-fields.js";
import {
  alreadyExists,
  Code,
  failedPrecondition,
  invalidArgument,
  notFound,
  ProtoctlError,
} from "../../common/errors.js";
import { fromServiceError, toServiceError } from "../../common/grpc.js";
import { noSuchObject, validateName } from "../../common/names.js";
import type {
  ControlDeleteEnvRequest,
  ControlListEnvsRequest,
  ControlStopEnvRequest,
  ControlWatchEnvsRequest,
  CreateEnvRequest,
  EnvEvent,
  EnvNameRequest,
  ExtendEnvRequest,
  RollEnvRequest,
} from "../../proto/gen/protoctl/v1/control.js";
import {
  type Env,
  EnvPhase,
  EnvSpec,
  type EnvStatus,
  type ExecInput,
  type ExecOutput,
  type LogLine,
  type LogsRequest,
} from "../../proto/gen/protoctl/v1/types.js";
import { agentCall, agentFor } from "../agents/call.js";
import type { ControllerContext } from "../context.js";
import { newStatus } from "../reconcile/env-reconciler.js";
import { keptOutput } from "../reconcile/failure-output.js";
import { codecs } from "../store/store.js";
import { envMoveApi } from "./env-move-api.js";
import type { EnvStatusWaiter } from "./env-watch.js";
import { cancelled, pipeFrom, serverStream, unary } from "./handlers.js";
import { ImageDefaults } from "./image-defaults.js";
import { sealResult } from "./seal.js";

const WAIT_MS = 10 * 60_000;
const SETTLED = new Set([EnvPhase.ENV_PHASE_RUNNING, EnvPhase.ENV_PHASE_FAILED, EnvPhase.ENV_PHASE_LOST]);

export function envApi(ctx: ControllerContext, waiter: EnvStatusWaiter) {
  const store = ctx.store;
  const imageDefaults = new ImageDefaults(store);
  const nameTaken = async (name: string) =>
    (await Promise.all([store.envSpecs.get(name), store.envStatus.get(name)])).some((v) => v !== undefined);

  const getEnv = async (name: string): Promise<Env> => {
    validateName("env", name);
    const [spec, status] = await Promise.all([store.envSpecs.get(name), store.envStatus.get(name)]);
    if (!spec && !status) throw envNotFound(name);
    return toEnv(name, spec?.value, status?.value);
  };

  const waitFor = async (
    name: string,
    check: (st: EnvStatus | undefined) => boolean,
    call: { on(e: "cancelled", f: () => void): unknown },
  ) => {
    const st = await waiter.wait(name, check, WAIT_MS, cancelled(call));
    if (st?.phase === EnvPhase.ENV_PHASE_FAILED) {
      throw new ProtoctlError(Code.FAILED_PRECONDITION, `env ${name} failed: ${st.message}`, {
        reason: "ENV_FAILED",
        subject: `env/${name}`,
        hint: `see \`protoctl env describe ${name}\` and \`protoctl events\``,
      });
    }
    return st;
  };

  const setRunning = async (name: string, start: boolean): Promise<void> => {
    validateName("env", name);
    await store.envSpecs.modify(name, (cur) => (cur.start === start ? undefined : { ...cur, start }));
  };

  return {
    ...envMoveApi(ctx, getEnv),
    createEnv: unary(async (req: CreateEnvRequest, call) => {
      const asked = withExpiry(checkSpec(req.spec), req.ttlMs ?? 0, ctx.config.envs.defaultTtlSeconds * 1000);
      // a layer the cluster has no record of could never be built: refused before the env is recorded
      const layers = await Promise.all(asked.layers.map((l) => store.layers.get(l)));
      const unknown = asked.layers.find((_, i) => !layers[i]);
      if (unknown) throw noSuchObject("layer", unknown);
      const status = newStatus();
      let spec = asked;
      for (let attempt = 0; ; attempt++) {
        const d = await imageDefaults.apply(asked, attempt > 0);
        spec = d.spec;
        if (await store.createEnv(spec, status, d.guards)) break;
        // the name is taken, or the base changed since its image defaults were read: read it again
        const taken = d.guards.length === 0 || (await nameTaken(spec.name));
        if (taken) {
          throw alreadyExists(`env ${spec.name} already exists (or is still being deleted)`, {
            reason: "NAME_IN_USE",
            subject: `env/${spec.name}`,
            hint: `pick another name or \`protoctl env rm ${spec.name}\` first`,
          });
        }
        if (attempt === 2) {
          throw new ProtoctlError(
            Code.ABORTED,
            `base ${spec.base?.name} kept changing while env ${spec.name} was created`,
            {
              reason: "CONFLICT",
            },
          );
        }
      }
      if (!req.wait) return { spec, status };
      const want = spec.start
        ? SETTLED
        : new Set([...SETTLED, EnvPhase.ENV_PHASE_CREATED, EnvPhase.ENV_PHASE_STOPPED]);
      const st = await waitFor(spec.name, (s) => !s || want.has(s.phase), call);
      if (st?.phase === EnvPhase.ENV_PHASE_LOST) {
        throw new ProtoctlError(Code.UNAVAILABLE, `env ${spec.name} was lost: ${st.message}`, {
          reason: "ENV_LOST",
        });
      }
      return { spec, status: st };
    }),

    getEnv: unary(async (req: { name: string }) => {
      const env = await getEnv(req.name);
      const node = env.status?.node;
      if (env.spec?.resources?.diskBytes && node && env.status) {
        // disk use is read live from the agent; best effort (describe still works without it)
        const live = await agentGetEnv(ctx, node, req.name).catch(() => undefined);
        env.status.diskUsedBytes = live?.status?.diskUsedBytes;
        env.status.diskLimitBytes = live?.status?.diskLimitBytes;
      }
      return env;
    }),

    listEnvs: unary(async (req: ControlListEnvsRequest) => {
      const [specs, statuses] = await Promise.all([store.envSpecs.list(), store.envStatus.list()]);
      const st = new Map<string, EnvStatus>();
      for (const it of statuses.items) st.set(store.envStatus.nameOf(it.key)!, it.value);
      const envs: Env[] = [];
      const seen = new Set<string>();
      for (const it of specs.items) {
        const name = store.envSpecs.nameOf(it.key)!;
        seen.add(name);
        envs.push(toEnv(name, it.value, st.get(name)));
      }
      for (const [name, s] of st) if (!seen.has(name)) envs.push(toEnv(name, undefined, s));
      return {
        envs: envs.filter(
          (e) => (!req.node || e.status?.node === req.node) && (!req.group || e.spec?.group === req.group),
        ),
      };
    }),

    startEnv: unary(async (req: EnvNameRequest, call) => {
      await setRunning(req.name, true);
      if (req.wait) await waitFor(req.name, (s) => !s || SETTLED.has(s.phase), call);
      return getEnv(req.name);
    }),

    stopEnv: unary(async (req: ControlStopEnvRequest, call) => {
      await setRunning(req.name, false);
      if (req.wait) {
        await waitFor(req.name, (s) => !s || s.phase !== EnvPhase.ENV_PHASE_RUNNING || !s.node, call);
      }
      return getEnv(req.name);
    }),

    deleteEnv: unary(async (req: ControlDeleteEnvRequest, call) => {
      validateName("env", req.name);
      const spec = await store.envSpecs.get(req.name);
      if (spec) {
        const r = await store.kv.commit({
          conditions: [{ key: spec.key, modRevision: spec.modRevision }],
          writes: [{ op: "delete", key: spec.key }],
        });
        if (!r.succeeded)
          throw new ProtoctlError(Code.ABORTED, `env ${req.name} changed meanwhile; try again`);
      } else if (!(await store.envStatus.get(req.name))) {
        throw envNotFound(req.name);
      }
      if (req.wait) await waiter.wait(req.name, (s) => !s, WAIT_MS, cancelled(call));
      return {};
    }),

    rollEnv: unary(async (req: RollEnvRequest, call) => {
      const cur = await store.envSpecs.mustGet(validateName("env", req.name));
      const base = cur.value.base?.name ?? "";
      const version = req.version || (await store.bases.get(base))?.value.latest || 0;
      if (!version)
        throw failedPrecondition(`base ${base} has no recorded version`, { reason: "BASE_NOT_FOUND" });
      // checked before the spec changes: a roll to a missing version would replace a running
      // env with one that can never be placed
      if (!(await store.getBaseVersion(base, version)))
        throw notFound(`base ${base}@${version} not found`, {
          reason: "BASE_VERSION_NOT_FOUND",
          subject: `base/${base}@${version}`,
          hint: `see \`protoctl base describe ${base}\``,
        });
      await store.envSpecs.modify(req.name, (s) => ({ ...s, base: { name: base, version } }));
      if (req.wait) {
        await waitFor(req.name, (s) => !s || (s.baseVersion === version && SETTLED.has(s.phase)), call);
      }
      return getEnv(req.name);
    }),

    extendEnv: unary(async (req: ExtendEnvRequest) => {
      validateName("env", req.name);
      checkTtl(req.byMs);
      if (!req.byMs)
        throw invalidArgument("extend by how long?", {
          reason: "INVALID_TTL",
          hint: "e.g. `protoctl env extend NAME 1h`",
        });
      const cur = await store.envSpecs.get(req.name);
      if (!cur) throw envNotFound(req.name);
      if (!cur.value.expiresMs) {
        throw failedPrecondition(`env ${req.name} has no ttl: it never expires`, {
          reason: "NO_TTL",
          subject: `env/${req.name}`,
        });
      }
      await store.envSpecs.modify(req.name, (s) =>
        s.expiresMs ? { ...s, expiresMs: Math.max(s.expiresMs, Date.now()) + req.byMs } : undefined,
      );
      await store.events.emit({
        kind: "env.extended",
        subject: `env/${req.name}`,
        message: `ttl extended by ${Math.round(req.byMs / 1000)}s`,
      });
      return getEnv(req.name);
    }),

    snapshotEnv: unary(async (req: { name: string; asBase: string }) => {
      const env = await getEnv(req.name);
      validateName("base", req.asBase);
      const node = env.status?.node;
      if (!node)
        throw failedPrecondition(`env ${req.name} is not placed on a node`, { reason: "ENV_NOT_PLACED" });
      const client = await agentFor(ctx, node);
      // a snapshot copies the env's filesystem: no quick deadline
      const res = await agentCall(
        client.snapshotEnv.bind(client),
        { name: req.name, asBase: req.asBase },
        60 * 60_000,
      );
      if (!res.baseVersion) throw new ProtoctlError(Code.INTERNAL, "agent returned no base version");
      return sealResult(ctx, node, "base.snapshot", res.baseVersion);
    }),

    execEnv: (call: ServerDuplexStream<ExecInput, ExecOutput>) => {
      let upstream: ReturnType<Awaited<ReturnType<typeof agentFor>>["exec"]> | undefined;
      const buffered: ExecInput[] = [];
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        call.emit("error", toServiceError(err));
      };
      call.on("data", (m: ExecInput) => {
        if (upstream) {
          upstream.write(m);
          return;
        }
        buffered.push(m);
        if (buffered.length > 1) return;
        if (m.input?.$case !== "start") {
          fail(invalidArgument("the first exec message must be `start`", { reason: "EXEC_PROTOCOL" }));
          return;
        }
        const name = m.input.start.env;
        getEnv(name)
          .then(async (env) => {
            if (env.status?.phase !== EnvPhase.ENV_PHASE_RUNNING || !env.status.node) {
              throw failedPrecondition(`env ${name} is not running`, {
                reason: "ENV_NOT_RUNNING",
                hint: `start it with \`protoctl env start ${name}\``,
              });
            }
            const client = await agentFor(ctx, env.status.node);
            const up = client.exec();
            upstream = up;
            up.on("data", (o: ExecOutput) => call.write(o));
            up.on("error", (err) => fail(fromServiceError(err)));
            up.on("end", () => {
              if (!failed) call.end();
            });
            for (const b of buffered.splice(0)) up.write(b);
            if (halfClosed) up.end();
          })
          .catch(fail);
      });
      let halfClosed = false;
      call.on("end", () => {
        halfClosed = true;
        upstream?.end();
      });
      call.on("cancelled", () => upstream?.cancel());
    },

    envLogs: serverStream<LogsRequest, LogLine>(async (req, send, call) => {
      const env = await getEnv(req.env);
      if (!env.status?.node)
        throw failedPrecondition(`env ${req.env} is not placed on a node`, { reason: "ENV_NOT_PLACED" });
      const client = await agentFor(ctx, env.status.node);
      const up = client.logs(req);
      call.on("cancelled", () => up.cancel());
      await pipeFrom(up, send).catch((err) => {
        const pe = fromServiceError(err);
        // a failed start the agent cleaned up: what the machine said is kept in the status
        const kept = keptOutput(env.status?.message ?? "");
        if (pe.code === Code.NOT_FOUND && env.status?.phase === EnvPhase.ENV_PHASE_FAILED && kept) {
          send({ stream: "system", data: Buffer.from(kept), timeMs: Date.now() });
          return;
        }
        throw pe;
      });
    }),

    watchEnvs: serverStream<ControlWatchEnvsRequest, EnvEvent>(async (req, send, call) => {
      if (req.name) validateName("env", req.name);
      const specs = new Map<string, EnvSpec>();
      const statuses = new Map<string, EnvStatus>();
      const want = (n: string | undefined): n is string => n !== undefined && (!req.name || n === req.name);
      const [sl, tl] = await Promise.all([store.envSpecs.list(), store.envStatus.list()]);
      for (const it of sl.items) {
        const n = store.envSpecs.nameOf(it.key);
        if (want(n)) specs.set(n, it.value);
      }
      for (const it of tl.items) {
        const n = store.envStatus.nameOf(it.key);
        if (want(n)) statuses.set(n, it.value);
      }
      for (const n of new Set([...specs.keys(), ...statuses.keys()])) {
        send({ type: "put", env: toEnv(n, specs.get(n), statuses.get(n)) });
      }
      const from = Math.max(sl.revision, tl.revision) + 1;
      const onErr = (err: Error) => call.emit("error", toServiceError(err));
      const c1 = await store.envSpecs.watch(
        from,
        (evs) => {
          for (const e of evs) {
            const n = store.envSpecs.nameOf(e.key);
            if (!want(n)) continue;
            if (e.type === "put" && e.value) specs.set(n, codecs.envSpec.decode(e.value));
            else specs.delete(n);
            if (specs.has(n) || statuses.has(n))
              send({ type: "put", env: toEnv(n, specs.get(n), statuses.get(n)) });
          }
        },
        onErr,
      );
      const c2 = await store.envStatus.watch(
        from,
        (evs) => {
          for (const e of evs) {
            const n = store.envStatus.nameOf(e.key);
            if (!want(n)) continue;
            if (e.type === "put" && e.value) {
              statuses.set(n, codecs.envStatus.decode(e.value));
              send({ type: "put", env: toEnv(n, specs.get(n), statuses.get(n)) });
            } else {
              statuses.delete(n);
              if (!specs.has(n)) send({ type: "delete", env: toEnv(n, undefined, undefined) });
            }
          }
        },
        onErr,
      );
      await new Promise<void>((resolve) => call.on("cancelled", resolve));
      await Promise.all([c1(), c2()]);
    }),
  };
}

/** The client of a node's agent (controller/agents/clients.ts). */
function envNotFound(name: string): ProtoctlError {
  return noSuchObject("env", name);
}

/** An env as the API shows it; a spec-less status is an env being deleted. */
export function toEnv(name: string, spec: EnvSpec | undefined, status: EnvStatus | undefined): Env {
  const st = status ?? newStatus();
  return {
    spec: spec ?? emptySpec(name),
    status: spec ? st : { ...st, phase: EnvPhase.ENV_PHASE_DELETING },
  };
}

function emptySpec(name: string): EnvSpec {
  return EnvSpec.fromPartial({ name });
}

export function checkSpec(spec: EnvSpec | undefined): EnvSpec {
  if (!spec) throw invalidArgument("env spec is missing", { reason: "SPEC_MISSING" });
  validateName("env", spec.name);
  if (!spec.base?.name)
    throw invalidArgument("env needs a base", { reason: "BASE_MISSING", hint: "pass --base NAME[@N]" });
  validateName("base", spec.base.name);
  for (const l of spec.layers) validateName("layer", l);
  if (spec.node) validateName("node", spec.node);
  if (spec.group) validateName("lab", spec.group);
  // refused here, before anything is recorded: on the agent it would leave a Failed env behind
  checkSpecFields(spec);
  if (spec.command) checkEnvCommand(spec.command);
  return spec;
}

/** The longest accepted ttl (ten years): keeps expiry times far from number precision limits. */
const MAX_TTL_MS = 10 * 365 * 86_400_000;

function checkTtl(ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_TTL_MS) {
    throw invalidArgument(`ttl ${ms} ms is out of range (at most ten years)`, { reason: "INVALID_TTL" });
  }
}

/**
 * Sets the spec's expiry from a ttl on the controller's clock (never the
 * client's): the request's ttl, else an absolute time already in the spec
 * (a lab's machines share the lab's), else the cluster default.
 */
export function withExpiry(spec: EnvSpec, ttlMs: number, defaultTtlMs: number, now = Date.now()): EnvSpec {
  checkTtl(ttlMs);
  if (ttlMs > 0) return { ...spec, expiresMs: now + ttlMs };
  if ((spec.expiresMs ?? 0) > 0) return spec;
  if (defaultTtlMs > 0) return { ...spec, expiresMs: now + defaultTtlMs };
  return { ...spec, expiresMs: undefined };
}

async function agentGetEnv(ctx: ControllerContext, node: string, name: string): Promise<Env> {
  const client = await agentFor(ctx, node);
  return agentCall(client.getEnv.bind(client), { name }, 3000);
}
