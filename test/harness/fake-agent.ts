/**
 * A fake agent that behaves: a real gRPC AgentService server in-process that
 * keeps env and base state in memory, answers at once, and takes injected
 * failures and delays. It joins and heartbeats through the real membership
 * client, so the controller sees it exactly as it sees a real agent.
 * Used by the controller's integration tests and bench/schedule.
 */
import { createHash } from "node:crypto";
import {
  Server,
  type ServerCredentials,
  type ServerInterceptor,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import {
  type Membership,
  type MembershipCredentials,
  startMembership,
} from "../../agent/membership/index.js";
import { unsealed } from "../../agent/service/seal-fields.js";
import { formatBaseRef, parseBaseRef } from "../../common/base-ref.js";
import { Code, failedPrecondition, notFound, ProtoctlError } from "../../common/errors.js";
import { GRPC_BASE_OPTIONS, toServiceError } from "../../common/grpc.js";
import { type Logger, silentLogger } from "../../common/logger.js";
import { serverCredentials } from "../../common/tls.js";
import { ClusterStore } from "../../controller/store/store.js";
import { type AgentInfo, AgentServiceService } from "../../proto/gen/protoctl/v1/agent.js";
import {
  type BaseVersion,
  BaseVersionState,
  type Env,
  EnvPhase,
  type OperationEvent,
} from "../../proto/gen/protoctl/v1/types.js";
import { type H2UnaryServer, serveUnary, type UnaryServerTls } from "./h2-unary-server.js";

/** The seed checksum a fake agent reports for a version it holds ("name@N"). */
export function fakeChecksum(ref: string): string {
  return `sha256:${createHash("sha256").update(ref).digest("hex")}`;
}

/**
 * Records the seals of the versions fake agents will hold (default
 * debian@1), as the controller does when it builds a version and pushes it:
 * origin the first agent listing it, the others its holders, checksum the
 * one fake agents report. A controller believes no node's report of a
 * version without a seal.
 */
export async function sealFakeBases(
  etcd: { endpoint: string; prefix: string },
  specs: Array<Pick<FakeAgentOptions, "name" | "bases">>,
): Promise<void> {
  const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix: etcd.prefix });
  try {
    const holders = new Map<string, string[]>();
    for (const s of specs)
      for (const ref of s.bases ?? ["debian@1"]) holders.set(ref, [...(holders.get(ref) ?? []), s.name]);
    for (const [ref, [origin, ...rest]] of holders) await sealFake(store, ref, origin!, rest);
  } finally {
    await store.close();
  }
}

/** A 1 MiB local version `name@N` as a fake agent holds it, with `checksum` when it reports one. */
function fakeBaseVersion(ref: string, checksum?: string): BaseVersion {
  return {
    ...parseBaseRef(ref),
    source: "fake",
    createdMs: Date.now(),
    recipeDigest: "",
    sizeBytes: 1 << 20,
    state: BaseVersionState.BASE_VERSION_STATE_LOCAL,
    nodes: [],
    users: [],
    parent: "",
    ...unsealed(checksum),
  };
}

/** Records one fake version's seal in `store`. */
export async function sealFake(
  store: ClusterStore,
  ref: string,
  origin: string,
  holders: string[] = [],
): Promise<void> {
  const bv = fakeBaseVersion(ref);
  await store.recordBaseVersion(bv, origin);
  // backdated past the origin's grace: only what agents report counts
  await store.updateSeal(bv.base, bv.version, (s) => ({
    ...s,
    checksum: fakeChecksum(ref),
    sealedMs: 1,
    holders,
  }));
}

export interface FakeAgentOptions {
  name: string;
  /** Base versions held at start, "name@N". */
  bases?: string[];
  memoryBytes?: number;
  poolSizeBytes?: number;
  cpus?: number;
  labels?: Record<string, string>;
  host?: string;
  /** Fixed port (default: any free one). */
  port?: number;
  credentials?: ServerCredentials;
  interceptors?: ServerInterceptor[];
  /** Delay added to every env call (ms). */
  delayMs?: number;
  /** Serve unary methods on node:http2, not grpc-js (h2-unary-server.ts): for benches (CPU). */
  lean?: boolean;
  /** A lean agent's mTLS: its certificate, the cluster CA, who may call (h2-unary-server.ts). */
  leanTls?: UnaryServerTls;
}

type Failure = { code: Code; remaining: number; message: string };

export class FakeAgent {
  readonly name: string;
  address = "";
  readonly envs = new Map<string, Env>();
  /** Creations per env name (a create with a new generation counts again). */
  readonly creates = new Map<string, number>();
  readonly calls = new Map<string, number>();
  readonly bases = new Map<string, BaseVersion>();
  readonly labels: Record<string, string>;
  delayMs: number;
  private readonly failures = new Map<string, Failure>();
  private server: Server | undefined;
  private leanServer: H2UnaryServer | undefined;
  private membership: Membership | undefined;

  constructor(private readonly opts: FakeAgentOptions) {
    this.name = opts.name;
    this.labels = opts.labels ?? {};
    this.delayMs = opts.delayMs ?? 0;
    for (const ref of opts.bases ?? ["debian@1"]) this.addBase(ref);
  }

  addBase(ref: string): BaseVersion {
    const bv = fakeBaseVersion(ref, fakeChecksum(ref));
    this.bases.set(ref, bv);
    this.membership?.refresh();
    return bv;
  }

  /** The next `count` calls of `method` fail with `code`. */
  failNext(method: string, code: Code, count = 1, message = "injected failure"): void {
    this.failures.set(method, { code, remaining: count, message });
  }

  info(): AgentInfo {
    const mem = this.opts.memoryBytes ?? 64 * 2 ** 30;
    const pool = this.opts.poolSizeBytes ?? 100 * 2 ** 30;
    return {
      node: this.name,
      version: "fake-0.1.0",
      capabilities: [{ name: "fake", ok: true, detail: "" }],
      capacity: {
        poolSizeBytes: pool,
        poolFreeBytes: pool,
        memoryBytes: mem,
        memoryFreeBytes: mem,
        cpus: this.opts.cpus ?? 8,
        envs: this.envs.size,
      },
      bases: [...this.bases.values()],
      labels: this.labels,
      attachments: [],
      exports: [],
    };
  }

  async start(): Promise<this> {
    if (this.opts.lean) {
      if (this.opts.credentials || this.opts.interceptors) throw new Error("lean agents take leanTls");
      const host = this.opts.host ?? "127.0.0.1";
      const lean = await serveUnary(
        AgentServiceService as unknown as Parameters<typeof serveUnary>[0],
        this.implementation(),
        host,
        this.opts.port ?? 0,
        this.opts.leanTls,
      );
      this.leanServer = lean;
      this.address = `${host}:${lean.port}`;
      return this;
    }
    const server = new Server({ ...GRPC_BASE_OPTIONS, interceptors: this.opts.interceptors ?? [] });
    server.addService(AgentServiceService, this.implementation() as UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${this.opts.host ?? "127.0.0.1"}:${this.opts.port ?? 0}`,
        this.opts.credentials ?? serverCredentials(undefined),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    this.server = server;
    this.address = `${this.opts.host ?? "127.0.0.1"}:${port}`;
    return this;
  }

  /** Joins a controller and heartbeats until `leave()` or `stop()`. */
  async join(
    controller: string | string[],
    token: string,
    opts: { credentials?: MembershipCredentials; log?: Logger; intervalMs?: number } = {},
  ): Promise<Membership> {
    this.membership = await startMembership({
      controller,
      token,
      name: this.name,
      address: this.address,
      labels: this.labels,
      credentials: opts.credentials,
      info: async () => this.info(),
      log: opts.log ?? silentLogger(),
      intervalMs: opts.intervalMs ?? 500,
      inventoryEveryMs: 500,
    });
    return this.membership;
  }

  /** Stops heartbeating (the node goes NotReady) but keeps serving. */
  async leave(): Promise<void> {
    await this.membership?.stop();
    this.membership = undefined;
  }

  async stop(): Promise<void> {
    await this.leave();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.tryShutdown(() => r()));
    s?.forceShutdown();
    await this.leanServer?.close();
    this.leanServer = undefined;
  }

  runningCount(): number {
    let n = 0;
    for (const e of this.envs.values()) if (e.status?.phase === EnvPhase.ENV_PHASE_RUNNING) n++;
    return n;
  }

  private async gate(method: string): Promise<void> {
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const f = this.failures.get(method);
    if (f && f.remaining > 0) {
      f.remaining--;
      throw new ProtoctlError(f.code, f.message, { reason: "INJECTED" });
    }
  }

  private env(name: string): Env {
    const e = this.envs.get(name);
    if (!e)
      throw notFound(`env ${name} not found on ${this.name}`, {
        reason: "ENV_NOT_FOUND",
        subject: `env/${name}`,
      });
    return e;
  }

  private setPhase(name: string, phase: EnvPhase): Env {
    const e = this.env(name);
    const next: Env = {
      spec: e.spec,
      status: {
        ...e.status!,
        phase,
        startedMs: phase === EnvPhase.ENV_PHASE_RUNNING ? Date.now() : e.status!.startedMs,
      },
    };
    this.envs.set(name, next);
    return next;
  }

  private nextVersion(base: string): number {
    let v = 0;
    for (const b of this.bases.values()) if (b.base === base) v = Math.max(v, b.version);
    return v + 1;
  }

  private implementation(): Record<string, unknown> {
    const unary =
      <Req, Res>(method: string, fn: (req: Req) => Res | Promise<Res>) =>
      (call: { request: Req }, cb: (err: unknown, res?: Res) => void) => {
        this.gate(method)
          .then(() => fn(call.request))
          .then(
            (res) => cb(null, res),
            (err) => cb(toServiceError(err)),
          );
      };
    const opStream =
      (method: string, fn: (req: never) => BaseVersion) =>
      (call: {
        request: never;
        write(m: OperationEvent): void;
        end(): void;
        emit(e: string, err: unknown): void;
      }) => {
        this.gate(method).then(
          () => {
            call.write({
              event: {
                $case: "progress",
                progress: {
                  step: method,
                  fraction: 0.5,
                  message: "",
                  node: this.name,
                  bytesDone: 0,
                  bytesTotal: 0,
                },
              },
            });
            const bv = fn(call.request);
            call.write({
              event: { $case: "result", result: { result: { $case: "baseVersion", baseVersion: bv } } },
            });
            call.end();
          },
          (err) => call.emit("error", toServiceError(err)),
        );
      };
    const unimplemented = (what: string) => (_call: unknown, cb?: (err: unknown) => void) => {
      const err = toServiceError(
        new ProtoctlError(Code.UNIMPLEMENTED, `${what} is not implemented by the fake agent`),
      );
      if (typeof cb === "function") cb(err);
      else (_call as { emit(e: string, x: unknown): void }).emit("error", err);
    };
    return {
      getInfo: unary("getInfo", () => this.info()),
      getPool: unary("getPool", () => ({
        kind: 1,
        path: "/fake",
        sizeBytes: 0,
        usedBytes: 0,
        freeBytes: 0,
        objects: [],
      })),
      listBases: unary("listBases", () => ({ bases: [] })),
      importBase: (call: {
        on(e: string, f: (m: unknown) => void): void;
        write(m: OperationEvent): void;
        end(): void;
        emit(e: string, x: unknown): void;
      }) => {
        let name = "";
        call.on("data", (m) => {
          const part = (m as { part?: { $case: string; header?: { name: string } } }).part;
          if (part?.$case === "header") name = part.header!.name;
        });
        call.on("end", () => {
          this.gate("importBase").then(
            () => {
              const bv = this.addBase(`${name}@${this.nextVersion(name)}`);
              call.write({
                event: { $case: "result", result: { result: { $case: "baseVersion", baseVersion: bv } } },
              });
              call.end();
            },
            (err) => call.emit("error", toServiceError(err)),
          );
        });
      },
      buildBase: opStream("buildBase", (req: { name: string }) =>
        this.addBase(`${req.name}@${this.nextVersion(req.name)}`),
      ),
      updateBase: opStream("updateBase", (req: { name: string }) => {
        const v = this.nextVersion(req.name);
        if (v === 1) throw failedPrecondition(`base ${req.name} not found`, { reason: "BASE_NOT_FOUND" });
        return { ...this.addBase(formatBaseRef(req.name, v)), parent: `${req.name}@${v - 1}` };
      }),
      deleteBaseVersion: unary("deleteBaseVersion", (req: { ref?: { name: string; version: number } }) => {
        const deleted: BaseVersion[] = [];
        for (const [k, b] of this.bases) {
          if (b.base === req.ref?.name && (!req.ref.version || req.ref.version === b.version)) {
            deleted.push(b);
            this.bases.delete(k);
          }
        }
        return { deleted };
      }),
      buildLayer: unimplemented("BuildLayer"),
      listLayers: unary("listLayers", () => ({ layers: [] })),
      deleteLayer: unary("deleteLayer", () => ({})),
      createEnv: unary("createEnv", (req: { spec?: Env["spec"]; generation: number }) => {
        const spec = req.spec!;
        const cur = this.envs.get(spec.name);
        if (cur && cur.status?.generation === req.generation) return cur;
        const base = spec.base!;
        const version = base.version || this.nextVersion(base.name) - 1;
        if (!this.bases.has(formatBaseRef(base.name, version))) {
          throw failedPrecondition(`base ${formatBaseRef(base.name, version)} is not on node ${this.name}`, {
            reason: "BASE_NOT_FOUND",
          });
        }
        const env: Env = {
          spec,
          status: {
            phase: spec.start ? EnvPhase.ENV_PHASE_RUNNING : EnvPhase.ENV_PHASE_CREATED,
            node: this.name,
            message: "",
            reasons: [],
            createdMs: Date.now(),
            startedMs: spec.start ? Date.now() : 0,
            baseVersion: version,
            leaderPid: 4242,
            addresses: [],
            generation: req.generation,
          },
        };
        this.envs.set(spec.name, env);
        this.creates.set(spec.name, (this.creates.get(spec.name) ?? 0) + 1);
        return env;
      }),
      startEnv: unary("startEnv", (req: { name: string }) =>
        this.setPhase(req.name, EnvPhase.ENV_PHASE_RUNNING),
      ),
      stopEnv: unary("stopEnv", (req: { name: string }) =>
        this.setPhase(req.name, EnvPhase.ENV_PHASE_STOPPED),
      ),
      deleteEnv: unary("deleteEnv", (req: { name: string }) => {
        this.envs.delete(req.name);
        return {};
      }),
      getEnv: unary("getEnv", (req: { name: string }) => this.env(req.name)),
      listEnvs: unary("listEnvs", () => ({ envs: [...this.envs.values()] })),
      snapshotEnv: unimplemented("SnapshotEnv"),
      exec: (call: {
        on(e: string, f: (m: unknown) => void): void;
        write(m: unknown): void;
        end(): void;
        emit(e: string, x: unknown): void;
      }) => {
        call.on("data", (m) => {
          const input = (m as { input?: { $case: string; start?: { env: string; command: string[] } } })
            .input;
          if (input?.$case !== "start") return;
          try {
            this.env(input.start!.env);
          } catch (err) {
            call.emit("error", toServiceError(err));
            return;
          }
          call.write({ output: { $case: "startedPid", startedPid: 4243 } });
          call.write({
            output: { $case: "stdout", stdout: Buffer.from(`${input.start!.command.join(" ")}\n`) },
          });
          call.write({ output: { $case: "exitCode", exitCode: 0 } });
          call.end();
        });
      },
      logs: (call: {
        request: { env: string };
        write(m: unknown): void;
        end(): void;
        emit(e: string, x: unknown): void;
      }) => {
        try {
          this.env(call.request.env);
        } catch (err) {
          call.emit("error", toServiceError(err));
          return;
        }
        call.write({
          stream: "stdout",
          data: Buffer.from(`hello from ${call.request.env}\n`),
          timeMs: Date.now(),
        });
        call.end();
      },
      watchEnvs: unimplemented("WatchEnvs"),
      ensureNetwork: unimplemented("EnsureNetwork"),
      deleteNetwork: unimplemented("DeleteNetwork"),
      publishSeed: unimplemented("PublishSeed"),
      serveExport: unimplemented("ServeExport"),
      stopExport: unimplemented("StopExport"),
      attach: unimplemented("Attach"),
      getAttachment: unimplemented("GetAttachment"),
      detach: unimplemented("Detach"),
      sendDelta: unimplemented("SendDelta"),
      receiveDelta: unimplemented("ReceiveDelta"),
    };
  }
}

export async function startFakeAgent(opts: FakeAgentOptions): Promise<FakeAgent> {
  return new FakeAgent(opts).start();
}
