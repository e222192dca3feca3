/**
 * The CLI's connection to the controller. Unary calls go over node:http2
 * directly (common/h2-unary.ts); streaming calls use grpc-js, loaded on their first
 * use. Commands that only list or change things never load grpc-js (~35 ms).
 */

import { readFileSync } from "node:fs";
import type { CallOptions, ClientDuplexStream, ClientReadableStream } from "@grpc/grpc-js";
import { Code, fromGrpcError, invalidArgument, ProtoctlError, unavailable } from "../../common/errors.js";
import { H2Duplex, type StreamDefinition } from "../../common/h2-duplex.js";
import { H2Unary } from "../../common/h2-unary.js";
import { type ControlServiceClient, ControlServiceService } from "../../proto/gen/protoctl/v1/control.js";
import type { ResolvedContext } from "../config/contexts.js";
import { controllerCertCheck } from "./server-role.js";

export interface CallOpts {
  /** Milliseconds; unset = no deadline (long work). */
  deadlineMs?: number;
  signal?: AbortSignal;
}

type Service = typeof ControlServiceService;
/** Methods of ControlService with one request and one response. */
export type UnaryMethod = {
  [K in keyof Service]: Service[K]["requestStream"] extends false
    ? Service[K]["responseStream"] extends false
      ? K
      : never
    : never;
}[keyof Service];
export type RequestOf<K extends UnaryMethod> = Parameters<Service[K]["requestSerialize"]>[0];
export type ResponseOf<K extends UnaryMethod> = ReturnType<Service[K]["responseDeserialize"]>;

export interface Credentials {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** A connected client plus helpers that map failures to ProtoctlError with the CLI's wording. */
export class Api {
  private readonly h2: H2Unary;
  private grpcClient?: Promise<ControlServiceClient>;

  constructor(
    readonly address: string,
    private readonly ctx: ResolvedContext,
    private readonly creds: Credentials,
  ) {
    this.h2 = new H2Unary({
      address,
      insecure: !!ctx.insecure,
      serverName: ctx.serverName,
      // the name is checked by controllerCertCheck, not sent as SNI (h2-unary.ts sendServerName):
      // our controller serves one certificate whatever the SNI
      sendServerName: false,
      checkServerIdentity: controllerCertCheck(ctx.serverName),
      ...creds,
    });
  }

  /** A unary call by method name: `api.unary("listNodes", {})`. */
  async unary<K extends UnaryMethod>(
    method: K,
    req: RequestOf<K>,
    opts: CallOpts = {},
  ): Promise<ResponseOf<K>> {
    const def = ControlServiceService[method];
    const body = (def.requestSerialize as (r: RequestOf<K>) => Buffer)(req);
    markFirstRpc();
    try {
      const res = await this.h2.call(def.path, body, opts);
      return (def.responseDeserialize as (b: Buffer) => ResponseOf<K>)(res);
    } catch (err) {
      throw this.explain(err);
    }
  }

  /**
   * A bidi stream on the unary transport's HTTP/2 session, without loading
   * grpc-js (common/h2-duplex.ts): `env exec`'s path.
   */
  async duplexH2<I, O>(def: StreamDefinition<I, O>): Promise<H2Duplex<I, O>> {
    markFirstRpc();
    const h2 = await this.h2.request(def.path);
    return new H2Duplex(h2, def, { describeClose: () => this.h2.lastError });
  }

  /** The grpc-js client, created on first use (streams only). */
  private client(): Promise<ControlServiceClient> {
    this.grpcClient ??= import("./grpc-client.js").then((m) =>
      m.grpcClient(this.address, this.ctx, this.creds),
    );
    return this.grpcClient;
  }

  /** A server stream, as an async iterator of messages. */
  async *stream<T>(
    open: (c: ControlServiceClient, opts: Partial<CallOptions>) => ClientReadableStream<T>,
    opts: CallOpts = {},
  ): AsyncGenerator<T> {
    const client = await this.client();
    markFirstRpc();
    const call = open(client, this.callOptions(opts));
    opts.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    try {
      for await (const msg of call) yield msg as T;
    } catch (err) {
      throw this.explain(err);
    } finally {
      call.cancel();
    }
  }

  /** A bidi or client stream; the caller writes and reads, errors go through `explain`. */
  async duplex<I, O>(
    open: (c: ControlServiceClient, opts: Partial<CallOptions>) => ClientDuplexStream<I, O>,
    opts: CallOpts = {},
  ): Promise<ClientDuplexStream<I, O>> {
    const client = await this.client();
    markFirstRpc();
    return open(client, this.callOptions(opts));
  }

  /** A client stream (the caller writes, one reply): the grpc-js client and options to open it with. */
  async clientStream(
    opts: CallOpts = {},
  ): Promise<{ client: ControlServiceClient; options: Partial<CallOptions> }> {
    const client = await this.client();
    markFirstRpc();
    return { client, options: this.callOptions(opts) };
  }

  private callOptions(opts: CallOpts): Partial<CallOptions> {
    return opts.deadlineMs ? { deadline: new Date(Date.now() + opts.deadlineMs) } : {};
  }

  /** Turns a failed call into a ProtoctlError; an unreachable controller gets the standard sentence. */
  explain(err: unknown): ProtoctlError {
    const pe =
      err instanceof ProtoctlError
        ? err
        : typeof (err as { code?: unknown })?.code === "number" &&
            typeof (err as { details?: unknown }).details === "string"
          ? fromGrpcError(err as Parameters<typeof fromGrpcError>[0])
          : ProtoctlError.from(err);
    // A status without our detail trailer came from the transport, not from the controller.
    const fromTransport = pe.reason === Code[pe.code];
    if (fromTransport && (pe.code === Code.UNAVAILABLE || pe.code === Code.DEADLINE_EXCEEDED)) {
      return unreachable(this.address, pe);
    }
    if (fromTransport && pe.code === Code.UNAUTHENTICATED) {
      return new ProtoctlError(
        Code.UNAUTHENTICATED,
        `the controller at ${this.address} refused our credentials`,
        {
          reason: "UNAUTHENTICATED",
          hint: "check the context's certificates (`protoctl context show`)",
          cause: pe,
        },
      );
    }
    return pe;
  }

  close(): void {
    this.h2.close();
    void this.grpcClient?.then((c) => c.close());
  }
}

export function unreachable(address: string, cause?: unknown): ProtoctlError {
  return unavailable(`cannot reach the controller at ${address}; is it running?`, {
    reason: "CONTROLLER_UNREACHABLE",
    hint: "try `protoctl up` (one machine) or check `protoctl context show`",
    cause,
  });
}

function pem(data: string | undefined, path: string | undefined, what: string): Buffer | undefined {
  if (data) return Buffer.from(data);
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw invalidArgument(`cannot read the ${what} ${path}: ${(err as Error).message}`, {
      reason: "CREDENTIALS_UNREADABLE",
      hint: "fix the context (`protoctl context show`) or run `protoctl up` again",
    });
  }
}

/** Opens a client for the context. Nothing is sent until the first call. */
export async function connect(ctx: ResolvedContext): Promise<Api> {
  const address = ctx.controller.replace(/^(grpcs?|https?):\/\//, "");
  const creds: Credentials = ctx.insecure
    ? {}
    : {
        ca: pem(ctx.caData, ctx.ca, "CA certificate"),
        cert: pem(ctx.certData, ctx.cert, "client certificate"),
        key: pem(ctx.keyData, ctx.key, "client key"),
      };
  return new Api(address, ctx, creds);
}

/**
 * Start-up instrumentation: with PROTOCTL_TRACE_STARTUP=1 the CLI prints, once, the
 * milliseconds from process start to the moment the first RPC is handed to the transport.
 */
let traced = false;
function markFirstRpc(): void {
  if (traced || !process.env.PROTOCTL_TRACE_STARTUP) return;
  traced = true;
  process.stderr.write(`protoctl-startup-ms ${performance.now().toFixed(2)}\n`);
}
