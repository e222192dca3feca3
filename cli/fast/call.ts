/**
 * The fast entry's gRPC calls over node:http2, with only Node's own modules
 * loaded: the same connection settings as the full CLI's transport
 * (common/h2-unary.ts as cli/client/connect.ts configures it: client
 * certificate, ALPN h2, no SNI, the controller certificate check of
 * cli/client/server-role.ts) and the same wire format. A failed call ends
 * in a Failure that report.ts turns into the full CLI's error (loaded only
 * then).
 */
import type { ClientHttp2Session, ClientHttp2Stream } from "node:http2";
import { frame, statusFromHeaders } from "../../common/grpc-wire.js";
import { controllerCertCheck } from "../client/server-role.js";
import type { FastContext } from "./context.js";

const UNKNOWN = 2;
const INTERNAL = 13;
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const CANCELLED = 1;

/** A gRPC status (or the transport's failure as one), as h2-unary.ts would report it. */
export interface Failure {
  code: number;
  message: string;
  md: Record<string, Buffer[]>;
}

export class FastCallError extends Error {
  constructor(readonly failure: Failure) {
    super(failure.message);
  }
}

export class FastConnection {
  private session?: ClientHttp2Session;
  private sessionError?: Error;

  constructor(private readonly ctx: FastContext) {}

  private async open(): Promise<ClientHttp2Session> {
    if (this.session) return this.session;
    const http2 = await import("node:http2");
    const c = this.ctx;
    const session = http2.connect(
      `${c.insecure ? "http" : "https"}://${c.address}`,
      c.insecure
        ? {}
        : {
            ca: c.ca,
            cert: c.cert,
            key: c.key,
            ALPNProtocols: ["h2"],
            checkServerIdentity: controllerCertCheck(c.serverName),
          },
    );
    session.on("error", (err) => {
      this.sessionError = err;
    });
    this.session = session;
    return session;
  }

  /**
   * Opens a call; `onMessage` gets each response message, the promise settles
   * with the call's status once the server ended its side (or the connection
   * failed: UNAVAILABLE with the session's reason, as the full CLI says it).
   */
  async call(
    path: string,
    opts: { deadlineMs?: number; onMessage: (m: Buffer) => void },
  ): Promise<{ stream: ClientHttp2Stream; done: Promise<void> }> {
    const session = await this.open();
    const headers: Record<string, string> = {
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      "user-agent": "protoctl-cli",
    };
    if (opts.deadlineMs) headers["grpc-timeout"] = `${opts.deadlineMs}m`;
    const stream = session.request(headers);
    const done = new Promise<void>((resolve, reject) => {
      let status: Failure | undefined;
      let settled = false;
      let buf: Buffer = Buffer.alloc(0);
      let timer: NodeJS.Timeout | undefined;
      const finish = (f: Failure | undefined) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        if (!stream.closed) stream.close();
        if (f && f.code !== 0) reject(new FastCallError(f));
        else if (buf.length > 0)
          reject(new FastCallError({ code: INTERNAL, message: "a message was cut short", md: {} }));
        else resolve();
      };
      if (opts.deadlineMs) {
        timer = setTimeout(
          () => finish({ code: DEADLINE_EXCEEDED, message: "deadline exceeded", md: {} }),
          opts.deadlineMs,
        );
      }
      stream.on("response", (h) => {
        if (h["grpc-status"] !== undefined) status = statusFromHeaders(h);
        else if (Number(h[":status"]) !== 200)
          status = { code: UNKNOWN, message: `HTTP status ${h[":status"]}`, md: {} };
      });
      stream.on("trailers", (h) => {
        status = statusFromHeaders(h);
      });
      stream.on("data", (chunk: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        while (buf.length >= 5 && !settled) {
          if (buf.readUInt8(0) !== 0) {
            finish({ code: INTERNAL, message: "the peer sent a compressed message", md: {} });
            return;
          }
          const len = buf.readUInt32BE(1);
          if (buf.length < 5 + len) break;
          const msg = buf.subarray(5, 5 + len);
          buf = buf.subarray(5 + len);
          try {
            opts.onMessage(msg);
          } catch (err) {
            finish({
              code: INTERNAL,
              message: `cannot decode a response: ${(err as Error).message}`,
              md: {},
            });
            return;
          }
        }
      });
      stream.on("error", () => {
        // the close that follows reports it
      });
      stream.on("end", () => {
        if (status) finish(status);
      });
      stream.on("close", () => {
        if (status) finish(status);
        else
          finish({
            code: UNAVAILABLE,
            message: this.sessionError?.message ?? "the connection closed without a status",
            md: {},
          });
      });
    });
    return { stream, done };
  }

  /** Sends one framed message. */
  static write(stream: ClientHttp2Stream, msg: Uint8Array): void {
    if (!stream.closed && !stream.destroyed) stream.write(frame(msg));
  }

  /** RST_STREAM CANCEL: the server sees a cancelled call. */
  static cancel(stream: ClientHttp2Stream): Failure {
    if (!stream.closed) stream.close();
    return { code: CANCELLED, message: "cancelled", md: {} };
  }

  close(): void {
    this.session?.close();
  }
}
