/**
 * gRPC glue shared by the three programs: server handlers that turn thrown
 * errors into status + ErrorDetail trailer, and promise wrappers for client
 * calls that turn statuses back into ProtoctlError.
 */
import {
  type CallOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type status as grpcStatus,
  Metadata,
  type ServerErrorResponse,
  type ServiceError,
} from "@grpc/grpc-js";
import { ErrorDetail } from "../proto/gen/protoctl/v1/types.js";
import { ERROR_DETAIL_KEY, fromGrpcError, ProtoctlError } from "./errors.js";

/**
 * Options for every channel and server of ours: channelz (grpc-js's call
 * tracing for its admin service, which we do not serve) off, as it costs
 * bookkeeping on every call.
 */
export const GRPC_BASE_OPTIONS = { "grpc.enable_channelz": 0 } as const;

/**
 * Largest request message a server of ours reads: a CreateEnv with its
 * files, a lab with its inlined files. grpc-js refuses a larger one from its
 * length prefix (and a compressed one by its decompressed size), before
 * buffering it and before any interceptor runs, so before authentication:
 * RESOURCE_EXHAUSTED, and the handler never sees it.
 */
export const MAX_REQUEST_BYTES = 64 * 2 ** 20;

/** Limits for every server of ours (controller, agent), applied before authentication. */
export const GRPC_SERVER_LIMITS = {
  "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
  // streams one connection may hold open at once (exec sessions, watches, log follows)
  "grpc.max_concurrent_streams": 1000,
} as const;

/** Converts any thrown value into the error object grpc-js sends as a status. */
export function toServiceError(err: unknown): ServerErrorResponse {
  const pe = ProtoctlError.from(err);
  const metadata = new Metadata();
  metadata.set(ERROR_DETAIL_KEY, Buffer.from(ErrorDetail.encode(pe.detail()).finish()));
  return Object.assign(new Error(pe.message), {
    code: pe.code as unknown as grpcStatus,
    details: pe.message,
    metadata,
  });
}

/** Converts a grpc-js client error into a ProtoctlError. */
export function fromServiceError(err: unknown): ProtoctlError {
  if (err instanceof ProtoctlError) return err;
  const se = err as ServiceError;
  if (typeof se?.code === "number") return fromGrpcError(se);
  return ProtoctlError.from(err);
}

type Callback<Res> = (err: ServerErrorResponse | null, res?: Res) => void;

/** Wraps an async unary handler. */
/** What a unary handler sees of its call (grpc-js's ServerUnaryCall has all of it). */
export interface UnaryCallLike {
  metadata: Metadata;
  getPeer(): string;
  /** "cancelled": the client went away (a handler that waits stops waiting). */
  on(e: "cancelled", f: () => void): unknown;
}

export function unaryHandler<Req, Res>(fn: (req: Req, call: UnaryCallLike) => Promise<Res>) {
  return (call: UnaryCallLike & { request: Req }, callback: Callback<Res>): void => {
    fn(call.request, call).then(
      (res) => callback(null, res),
      (err) => callback(toServiceError(err)),
    );
  };
}

export type UnaryMethod<Req, Res> = (
  req: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  cb: (err: ServiceError | null, res: Res) => void,
) => ClientUnaryCall;

/** Calls a unary client method and resolves with the response or rejects with a ProtoctlError. */
export function callUnary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  req: Req,
  opts: { deadlineMs?: number; metadata?: Metadata; signal?: AbortSignal } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const options: Partial<CallOptions> = {};
    if (opts.deadlineMs) options.deadline = new Date(Date.now() + opts.deadlineMs);
    const call = method(req, opts.metadata ?? new Metadata(), options, (err, res) => {
      if (err) reject(fromServiceError(err));
      else resolve(res);
    });
    opts.signal?.addEventListener("abort", () => call.cancel(), { once: true });
  });
}

/** Iterates a server stream, mapping a failed status to ProtoctlError. */
export async function* iterateStream<T>(stream: ClientReadableStream<T>): AsyncGenerator<T> {
  try {
    for await (const msg of stream) yield msg as T;
  } catch (err) {
    throw fromServiceError(err);
  }
}
