/**
 * The CLI's connection to the controller. Everything gRPC is loaded here,
 * dynamically, so commands that never talk to the server (help, context,
 * completion scripts) do not pay ~40 ms for grpc-js and the generated code.
 */
import { readFileSync } from "node:fs";
import type { CallOptions, ClientDuplexStream, ClientReadableStream, Metadata } from "@grpc/grpc-js";
import { Code, invalidArgument, ProtoctlError, unavailable } from "../../common/errors.js";
import type { ControlServiceClient } from "../../proto/gen/protoctl/v1/control.js";
import type { ResolvedContext } from "../config/contexts.js";

export interface CallOpts {
  /** Milliseconds; unset = no deadline (long work). */
  deadlineMs?: number;
  signal?: AbortSignal;
}

/** A connected client plus helpers that map failures to ProtoctlError with the CLI's wording. */
export class Api {
  constructor(
    readonly client: ControlServiceClient,
    readonly address: string,
    private readonly grpc: typeof import("@grpc/grpc-js"),
    private readonly common: typeof import("../../common/grpc.js"),
  ) {}

  /** A unary call: `api.unary(c => c.listNodes, {})`. */
  async unary<Req, Res>(
    pick: (
      c: ControlServiceClient,
    ) => (
      req: Req,
      md: Metadata,
      opts: Partial<CallOptions>,
      cb: (err: import("@grpc/grpc-js").ServiceError | null, res: Res) => void,
    ) => import("@grpc/grpc-js").ClientUnaryCall,
    req: Req,
    opts: CallOpts = {},
  ): Promise<Res> {
    markFirstRpc();
    try {
      return await this.common.callUnary(pick(this.client).bind(this.client), req, opts);
    } catch (err) {
      throw this.explain(err);
    }
  }

  /** A server stream, as an async iterator of messages. */
  async *stream<T>(
    open: (c: ControlServiceClient, opts: Partial<CallOptions>) => ClientReadableStream<T>,
    opts: CallOpts = {},
  ): AsyncGenerator<T> {
    markFirstRpc();
    const call = open(this.client, this.callOptions(opts));
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
  duplex<I, O>(
    open: (c: ControlServiceClient, opts: Partial<CallOptions>) => ClientDuplexStream<I, O>,
    opts: CallOpts = {},
  ): ClientDuplexStream<I, O> {
    markFirstRpc();
    return open(this.client, this.callOptions(opts));
  }

  callOptions(opts: CallOpts): Partial<CallOptions> {
    return opts.deadlineMs ? { deadline: new Date(Date.now() + opts.deadlineMs) } : {};
  }

  metadata(): Metadata {
    return new this.grpc.Metadata();
  }

  /** Turns a failed call into a ProtoctlError; an unreachable controller gets the standard sentence. */
  explain(err: unknown): ProtoctlError {
    const pe = this.common.fromServiceError(err);
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
    this.client.close();
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
  const [grpc, gen, common] = await Promise.all([
    import("@grpc/grpc-js"),
    import("../../proto/gen/protoctl/v1/control.js"),
    import("../../common/grpc.js"),
  ]);
  const address = ctx.controller.replace(/^(grpcs?|https?):\/\//, "");
  let creds: import("@grpc/grpc-js").ChannelCredentials;
  if (ctx.insecure) {
    creds = grpc.credentials.createInsecure();
  } else {
    creds = grpc.credentials.createSsl(
      pem(ctx.caData, ctx.ca, "CA certificate") ?? null,
      pem(ctx.keyData, ctx.key, "client key") ?? null,
      pem(ctx.certData, ctx.cert, "client certificate") ?? null,
    );
  }
  const client = new gen.ControlServiceClient(address, creds, {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    // A CLI call should fail fast when the controller is down, not retry for 20 s.
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
    ...(ctx.serverName && !ctx.insecure ? { "grpc.ssl_target_name_override": ctx.serverName } : {}),
  });
  return new Api(client, address, grpc, common);
}

/**
 * Start-up instrumentation: with PROTOCTL_TRACE_STARTUP=1 the CLI prints, once, the
 * milliseconds from process start to the moment the first RPC is handed to grpc-js.
 */
let traced = false;
function markFirstRpc(): void {
  if (traced || !process.env.PROTOCTL_TRACE_STARTUP) return;
  traced = true;
  process.stderr.write(`protoctl-startup-ms ${performance.now().toFixed(2)}\n`);
}
