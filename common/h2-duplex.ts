/**
 * A bidirectional gRPC stream over node:http2, without grpc-js (see
 * h2-unary.ts for the wire format and why). Used by `protoctl env exec`:
 * loading grpc-js for its one stream cost the CLI more than everything else
 * it does for `exec -- true` (measured here: importing the grpc-js chunk
 * alone ~+70% of `node -e 0`).
 *
 * An object-mode Duplex: write request messages, iterate (or read) response
 * messages; the call's status arrives in the trailers, and a non-OK status
 * destroys the stream with the same ProtoctlError the unary path gives.
 * `cancel()` resets the HTTP/2 stream (the server sees a cancelled call).
 * Messages are length-prefixed and never compressed; a response message
 * larger than `maxMessageBytes` is refused (RESOURCE_EXHAUSTED).
 */
import type { ClientHttp2Stream } from "node:http2";
import { Duplex } from "node:stream";
import { Code } from "./errors.js";
import { frame, statusError, statusFromHeaders } from "./h2-unary.js";

/** What a grpc-js service definition gives for a streaming method. */
export interface StreamDefinition<Req, Res> {
  path: string;
  requestSerialize(value: Req): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}

/** Largest response message accepted by default (bytes). */
export const MAX_STREAM_MESSAGE_BYTES = 16 * 2 ** 20;

/**
 * Splits length-prefixed messages out of a byte stream: `push` bytes in, get
 * whole messages back (a message may span chunks, a chunk hold several).
 */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxBytes = MAX_STREAM_MESSAGE_BYTES) {}

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.buf.length >= 5) {
      if (this.buf.readUInt8(0) !== 0) throw statusError(Code.INTERNAL, "the peer sent a compressed message");
      const len = this.buf.readUInt32BE(1);
      if (len > this.maxBytes) {
        throw statusError(Code.RESOURCE_EXHAUSTED, `a message is larger than ${this.maxBytes} bytes`);
      }
      if (this.buf.length < 5 + len) break;
      out.push(this.buf.subarray(5, 5 + len));
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }

  /** Bytes of an incomplete message still held. */
  get pending(): number {
    return this.buf.length;
  }
}

export class H2Duplex<Req, Res> extends Duplex {
  private status?: { code: number; message: string; md: Record<string, Buffer[]> };
  private readonly reader: MessageReader;
  /** The call's outcome was delivered (end of messages or an error). */
  private settled = false;

  constructor(
    private readonly h2: ClientHttp2Stream,
    private readonly def: StreamDefinition<Req, Res>,
    opts: { maxMessageBytes?: number; describeClose?: () => string | undefined } = {},
  ) {
    super({ objectMode: true });
    this.reader = new MessageReader(opts.maxMessageBytes);
    h2.on("response", (h) => {
      const httpStatus = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) this.status = statusFromHeaders(h);
      else if (httpStatus !== 200)
        this.status = { code: Code.UNKNOWN, message: `HTTP ${httpStatus}`, md: {} };
    });
    h2.on("trailers", (h) => {
      this.status = statusFromHeaders(h);
    });
    h2.on("data", (chunk: Buffer) => {
      let msgs: Buffer[];
      try {
        msgs = this.reader.push(chunk);
      } catch (err) {
        h2.close();
        this.destroy(err as Error);
        return;
      }
      for (const m of msgs) {
        let value: Res;
        try {
          value = def.responseDeserialize(m);
        } catch (err) {
          h2.close();
          this.destroy(statusError(Code.INTERNAL, `cannot decode a response: ${(err as Error).message}`));
          return;
        }
        if (!this.push(value)) h2.pause();
      }
    });
    h2.on("error", () => {
      // the close that follows reports it (without a status: UNAVAILABLE)
    });
    // The call is over once the server has ended its side: its status came in the trailers (or
    // the headers). Waiting for the stream's 'close' instead hung `env exec`: that needs our side
    // ended too, and exec ends it only after reading everything (the server never resets).
    h2.on("end", () => {
      if (this.status) this.settle(this.status);
    });
    h2.on("close", () => {
      if (this.destroyed || this.settled) return;
      const s = this.status;
      if (s) this.settle(s);
      else {
        const why = opts.describeClose?.() ?? "the connection closed without a status";
        this.settled = true;
        this.destroy(statusError(Code.UNAVAILABLE, why));
      }
    });
  }

  /** Ends the readable side with the call's status, then lets the HTTP/2 stream go. */
  private settle(s: { code: number; message: string; md: Record<string, Buffer[]> }): void {
    if (this.settled || this.destroyed) return;
    this.settled = true;
    if (s.code !== Code.OK) this.destroy(statusError(s.code, s.message, s.md));
    else if (this.reader.pending > 0) this.destroy(statusError(Code.INTERNAL, "a message was cut short"));
    else this.push(null);
    // our side may still be open (exec ends it after reading): close the stream, nothing is lost
    if (!this.h2.closed) this.h2.close();
  }

  override _read(): void {
    this.h2.resume();
  }

  override _write(msg: Req, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let bytes: Buffer;
    try {
      bytes = frame(this.def.requestSerialize(msg));
    } catch (err) {
      cb(err as Error);
      return;
    }
    if (this.h2.destroyed || this.h2.closed) {
      cb();
      return;
    }
    // a failed write ends the HTTP/2 stream: its close reports the call's status (or UNAVAILABLE)
    this.h2.write(bytes, () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.h2.destroyed && !this.h2.closed) this.h2.end();
    cb();
  }

  /** Ends the call now (RST_STREAM CANCEL); iteration stops with CANCELLED. */
  cancel(): void {
    if (!this.h2.closed) this.h2.close();
    if (!this.destroyed && !this.settled) this.destroy(statusError(Code.CANCELLED, "cancelled"));
    this.settled = true;
  }
}
