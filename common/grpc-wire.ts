/**
 * gRPC's wire format over HTTP/2, the pieces both hand-made clients share
 * (common/h2-unary.ts, common/h2-duplex.ts, and the CLI's fast entry
 * cli/fast/call.ts). Node's own types only, so the fast entry can load it
 * without errors.ts and the generated protobuf code.
 */
import type { IncomingHttpHeaders } from "node:http2";

/** Trailer carrying our ErrorDetail (base64 protobuf), next to grpc-status / grpc-message. */
export const ERROR_DETAIL_KEY = "protoctl-error-bin";

/** grpc-status when a peer sends none (gRPC's UNKNOWN). */
const UNKNOWN = 2;

/** grpc-message is percent-encoded. */
function decodeMessage(raw: string | string[] | undefined): string {
  const s = Array.isArray(raw) ? raw.join(",") : (raw ?? "");
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The status of a finished call from its trailers (or trailers-only headers). */
export function statusFromHeaders(h: IncomingHttpHeaders): {
  code: number;
  message: string;
  md: Record<string, Buffer[]>;
} {
  const code = Number(h["grpc-status"] ?? UNKNOWN);
  const md: Record<string, Buffer[]> = {};
  const detail = h[ERROR_DETAIL_KEY];
  if (detail)
    md[ERROR_DETAIL_KEY] = (Array.isArray(detail) ? detail : [detail]).map((v) => Buffer.from(v, "base64"));
  return {
    code: Number.isInteger(code) ? code : UNKNOWN,
    message: decodeMessage(h["grpc-message"]),
    md,
  };
}

/** Frames one message: flag 0 (not compressed), 4-byte length, bytes. */
export function frame(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out.writeUInt8(0, 0);
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  return out;
}
