/**
 * One error class for all of protoctl. Domain code throws `ProtoctlError`
 * with a gRPC status code and a stable `reason`; the gRPC layer carries it as
 * a status plus an `ErrorDetail` in the `protoctl-error-bin` trailer, and the
 * client turns it back into the same class. Nothing matches on message text.
 */

import { constants } from "node:os";
import { ErrorDetail } from "../proto/gen/protoctl/v1/types.js";
import { ERROR_DETAIL_KEY } from "./grpc-wire.js";

/** gRPC status codes (numeric values fixed by the gRPC spec). */
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

export { ERROR_DETAIL_KEY };

export interface ErrorFields {
  /** Stable machine-readable reason, e.g. "BASE_NOT_FOUND". */
  reason?: string;
  /** What the user can do next. */
  hint?: string;
  /** The object the error is about, e.g. "env/web-1". */
  subject?: string;
  /** Output of a failed command, kept for the user. */
  output?: string;
  metadata?: Record<string, string>;
  cause?: unknown;
}

/** Linux's errno for a disk quota reached (a btrfs qgroup limit: `env create --disk`). */
const EDQUOT = constants.errno.EDQUOT;

/**
 * The one rule of what retrying cannot fix, used by every reconciler and
 * caller (`ProtoctlError.retryable`). Everything else may succeed later: a
 * node or the store coming back (UNAVAILABLE), a conflict (ABORTED), a
 * missing object the loop is about to supply (NOT_FOUND), an agent fault
 * (INTERNAL). RESOURCE_EXHAUSTED is terminal: it means a full pool or an
 * exhausted range here (we run no rate limits), and the same call on the same
 * node fails the same way until an operator frees space; the scheduler
 * places elsewhere instead.
 */
export const TERMINAL_CODES: ReadonlySet<Code> = new Set([
  Code.INVALID_ARGUMENT,
  Code.FAILED_PRECONDITION,
  Code.ALREADY_EXISTS,
  Code.PERMISSION_DENIED,
  Code.UNIMPLEMENTED,
  Code.OUT_OF_RANGE,
  Code.RESOURCE_EXHAUSTED,
]);

export class ProtoctlError extends Error {
  override readonly name = "ProtoctlError";
  readonly code: Code;
  readonly reason: string;
  readonly hint: string;
  readonly subject: string;
  readonly output: string;
  readonly metadata: Record<string, string>;

  constructor(code: Code, message: string, fields: ErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.code = code;
    this.reason = fields.reason ?? Code[code] ?? "UNKNOWN";
    this.hint = fields.hint ?? "";
    this.subject = fields.subject ?? "";
    this.output = fields.output ?? "";
    this.metadata = fields.metadata ?? {};
  }

  /** See TERMINAL_CODES: the single retry rule. */
  get retryable(): boolean {
    return !TERMINAL_CODES.has(this.code);
  }

  /** Converts anything caught into a ProtoctlError (INTERNAL when unknown). */
  static from(err: unknown): ProtoctlError {
    if (err instanceof ProtoctlError) return err;
    if (isGrpcServiceError(err)) return fromGrpcError(err);
    if (err instanceof Error) {
      const e = err as Error & { code?: unknown };
      if (isStoreUnavailable(err)) {
        return new ProtoctlError(
          Code.UNAVAILABLE,
          `the cluster store (etcd) is not answering: ${e.message}`,
          {
            reason: "STORE_UNAVAILABLE",
            hint: "the controller retried for several seconds; check that etcd runs (protoctl doctor, its log), then run the command again",
            cause: err,
          },
        );
      }
      // libuv has no name for EDQUOT (a disk limit reached): Node says "Unknown system error -122"
      const errno = (e as { errno?: unknown }).errno;
      if (e.code === "EDQUOT" || errno === -EDQUOT) {
        const message = e.message.replace(
          /(Unknown system error -\d+)(: \1)?/g,
          "disk quota exceeded (EDQUOT)",
        );
        return new ProtoctlError(Code.RESOURCE_EXHAUSTED, message, { reason: "NO_SPACE", cause: err });
      }
      if (e.code === "ENOSPC") {
        return new ProtoctlError(Code.RESOURCE_EXHAUSTED, e.message, { reason: "NO_SPACE", cause: err });
      }
      if (e.name === "AbortError") return new ProtoctlError(Code.CANCELLED, e.message, { cause: err });
      return new ProtoctlError(Code.INTERNAL, e.message, { cause: err });
    }
    return new ProtoctlError(Code.INTERNAL, String(err));
  }

  detail(): ErrorDetail {
    return {
      reason: this.reason,
      hint: this.hint,
      subject: this.subject,
      metadata: this.metadata,
      output: this.output.slice(-8192),
    };
  }
}

export const notFound = (message: string, f?: ErrorFields) => new ProtoctlError(Code.NOT_FOUND, message, f);
export const alreadyExists = (message: string, f?: ErrorFields) =>
  new ProtoctlError(Code.ALREADY_EXISTS, message, f);
export const invalidArgument = (message: string, f?: ErrorFields) =>
  new ProtoctlError(Code.INVALID_ARGUMENT, message, f);
export const failedPrecondition = (message: string, f?: ErrorFields) =>
  new ProtoctlError(Code.FAILED_PRECONDITION, message, f);
export const resourceExhausted = (message: string, f?: ErrorFields) =>
  new ProtoctlError(Code.RESOURCE_EXHAUSTED, message, f);
export const unavailable = (message: string, f?: ErrorFields) =>
  new ProtoctlError(Code.UNAVAILABLE, message, f);
export const internal = (message: string, f?: ErrorFields) => new ProtoctlError(Code.INTERNAL, message, f);
export const unauthenticated = (message: string, f?: ErrorFields) =>
  new ProtoctlError(Code.UNAUTHENTICATED, message, f);
export const permissionDenied = (message: string, f?: ErrorFields) =>
  new ProtoctlError(Code.PERMISSION_DENIED, message, f);

/**
 * An etcd3 client error that means "etcd did not answer" (as opposed to a
 * refused request): the client tags those with its RecoverableError symbol,
 * and cockatiel marks its BrokenCircuitError with isBrokenCircuitError. Told apart structurally so this module does not import etcd3
 * (the CLI loads it).
 */
export function isStoreUnavailable(err: Error): boolean {
  if ((err as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true) return true;
  return Object.getOwnPropertySymbols(err).some((s) => s.description === "RecoverableError");
}

/** The shape grpc-js gives a failed call, kept structural to avoid importing grpc-js here. */
export interface GrpcServiceErrorLike {
  code: number;
  details: string;
  metadata?: { get(key: string): Array<string | Buffer> };
}

export function isGrpcServiceError(err: unknown): err is GrpcServiceErrorLike {
  return (
    typeof err === "object" &&
    err !== null &&
    typeof (err as { code?: unknown }).code === "number" &&
    typeof (err as { details?: unknown }).details === "string"
  );
}

/** Rebuilds a ProtoctlError from a grpc-js error, reading the detail trailer when present. */
export function fromGrpcError(err: GrpcServiceErrorLike): ProtoctlError {
  let fields: ErrorFields = {};
  const raw = err.metadata?.get(ERROR_DETAIL_KEY)?.[0];
  if (raw && typeof raw !== "string") {
    try {
      const d = ErrorDetail.decode(raw);
      fields = { reason: d.reason, hint: d.hint, subject: d.subject, output: d.output, metadata: d.metadata };
    } catch {
      // a malformed trailer is ignored: the status code still stands
    }
  }
  const code = (err.code in Code ? err.code : Code.UNKNOWN) as Code;
  return new ProtoctlError(code, err.details || Code[code] || "error", { ...fields, cause: err });
}
