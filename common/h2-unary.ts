/**
 * Unary gRPC calls over node:http2, without grpc-js. Why: loading grpc-js
 * costs ~35 ms, a quarter of the CLI's start-up budget (bench/cli-startup),
 * and most commands make one or two unary calls. Streams (exec, logs,
 * progress) still use grpc-js, loaded on their first use. The controller
 * makes its per-env agent calls this way too: a call costs about half the
 * CPU of one through grpc-js's channel stack (0.10 vs 0.19 ms client and
 * server together, measured here), which is what bench/schedule is bound by.
 *
 * The wire format is gRPC's: POST /package.Service/Method with
 * content-type application/grpc and `te: trailers`; the body is one
 * length-prefixed message (1 byte compressed flag, 4 bytes big-endian length);
 * the status comes in the trailers (or in the headers of a trailers-only
 * response) as grpc-status / grpc-message, with our ErrorDetail in
 * `protoctl-error-bin` (base64). Failures become the same ProtoctlError the
 * grpc-js path gives (common/errors.ts fromGrpcError).
 */
import type { ClientHttp2Session, ClientHttp2Stream } from "node:http2";
import type { SecureContext } from "node:tls";
import { Code, fromGrpcError, type ProtoctlError } from "./errors.js";
import { frame, statusFromHeaders } from "./grpc-wire.js";

export interface H2Options {
  /** host:port */
  address: string;
  insecure: boolean;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /**
   * A TLS context to dial with instead of one made from ca, cert and key on
   * every connection. Making one parses the CA, the certificate and the key
   * (~1.5 ms of CPU here): a controller that dials a hundred agents with the
   * same material shares one (controller/agents/clients.ts).
   */
  secureContext?: SecureContext;
  /** Name to verify in the server certificate (and send as SNI, unless sendServerName is false). */
  serverName?: string;
  /**
   * Send serverName as SNI (default true). Node tests an SNI name with net.isIP, whose IPv6
   * regular expression is compiled on first use: a cost the CLI's start-up cannot afford. A
   * client that skips it must check the name itself (checkServerIdentity gets the dialled host).
   */
  sendServerName?: boolean;
  /** Sent as user-agent. */
  userAgent?: string;
  /** Deadline of a call that gives none (ms); default DEFAULT_UNARY_DEADLINE_MS. */
  defaultDeadlineMs?: number;
  /** Largest response accepted (bytes); default MAX_RESPONSE_BYTES. */
  maxResponseBytes?: number;
  /** Replaces the default server check (e.g. to require the server's role too). */
  checkServerIdentity?: (host: string, cert: import("node:tls").PeerCertificate) => Error | undefined;
}

/**
 * Every unary call has a deadline: a controller or agent that stops
 * answering (or a peer that never sends a status) cannot hang the caller.
 * Generous, as it also bounds calls that wait (env create with startup
 * commands, stop --wait); callers with a tighter bound pass their own.
 */
export const DEFAULT_UNARY_DEADLINE_MS = 15 * 60_000;

/** A response larger than this is refused (RESOURCE_EXHAUSTED) instead of buffered. */
export const MAX_RESPONSE_BYTES = 64 * 2 ** 20 + 5;

/** What a grpc-js service definition (ts-proto `...Service[method]`) gives for a unary method. */
export interface UnaryDefinition<Req, Res> {
  path: string;
  requestSerialize(value: Req): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}

export interface CallOptions {
  deadlineMs?: number;
  signal?: AbortSignal;
}

/** A gRPC status (code, message, trailers) as the ProtoctlError grpc-js would give. */
export function statusError(code: number, details: string, md: Record<string, Buffer[]> = {}): ProtoctlError {
  return fromGrpcError({ code, details, metadata: { get: (k: string) => md[k] ?? [] } });
}

export { frame, statusFromHeaders };

/** Extracts the single message of a unary response body. */
export function unframe(body: Buffer): Buffer {
  if (body.length < 5) throw statusError(Code.INTERNAL, "the controller sent an empty response");
  if (body.readUInt8(0) !== 0) throw statusError(Code.INTERNAL, "the controller sent a compressed response");
  const len = body.readUInt32BE(1);
  if (body.length < 5 + len) throw statusError(Code.INTERNAL, "the controller's response was cut short");
  return body.subarray(5, 5 + len);
}

export class H2Unary {
  private session?: ClientHttp2Session;
  private sessionError?: Error;
  /** When the current session last delivered a response (a stuck one is dropped, see call). */
  private lastResponse = 0;

  constructor(private readonly opts: H2Options) {}

  private async open(): Promise<ClientHttp2Session> {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const http2 = await import("node:http2");
    // calls made together all waited for the import: the first one back dials, the rest share its
    // session (each dialled its own before: a burst of N first calls opened N TLS connections)
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const o = this.opts;
    const url = `${o.insecure ? "http" : "https"}://${o.address}`;
    const session = http2.connect(url, {
      ...(o.insecure
        ? {}
        : o.secureContext
          ? { secureContext: o.secureContext, ALPNProtocols: ["h2"] }
          : { ca: o.ca, cert: o.cert, key: o.key, ALPNProtocols: ["h2"] }),
      ...(o.serverName && !o.insecure && o.sendServerName !== false ? { servername: o.serverName } : {}),
      ...(o.checkServerIdentity && !o.insecure ? { checkServerIdentity: o.checkServerIdentity } : {}),
    });
    this.sessionError = undefined;
    this.lastResponse = performance.now();
    session.on("error", (err) => {
      this.sessionError = err;
    });
    this.session = session;
    return session;
  }

  /** A unary call through a service definition: encodes the request, decodes the response. */
  async unary<Req, Res>(def: UnaryDefinition<Req, Res>, req: Req, opts: CallOptions = {}): Promise<Res> {
    return def.responseDeserialize(await this.call(def.path, def.requestSerialize(req), opts));
  }

  /** Sends one request message to `path` and resolves with the response message bytes. */
  async call(path: string, request: Uint8Array, opts: CallOptions = {}): Promise<Buffer> {
    const session = await this.open();
    const started = performance.now();
    return new Promise<Buffer>((resolve, reject) => {
      let settled = false;
      const chunks: Buffer[] = [];
      let received = 0;
      const maxBytes = this.opts.maxResponseBytes ?? MAX_RESPONSE_BYTES;
      const deadlineMs = opts.deadlineMs || this.opts.defaultDeadlineMs || DEFAULT_UNARY_DEADLINE_MS;
      let timer: NodeJS.Timeout | undefined;
      const finish = (err: unknown, value?: Buffer) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        if (err) reject(err);
        else resolve(value!);
      };
      const headers: Record<string, string> = {
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        "user-agent": this.opts.userAgent ?? "protoctl-cli",
      };
      headers["grpc-timeout"] = `${Math.max(1, Math.ceil(deadlineMs))}m`;
      const stream = session.request(headers);
      timer = setTimeout(() => {
        stream.close();
        // Nothing came back on this connection since the call began: it may be dead without a
        // reset (peer gone, no FIN). Drop it, so the next call dials afresh.
        if (this.lastResponse < started && this.session === session) {
          session.destroy();
          this.session = undefined;
        }
        finish(statusError(Code.DEADLINE_EXCEEDED, "deadline exceeded"));
      }, deadlineMs);
      opts.signal?.addEventListener(
        "abort",
        () => {
          stream.close();
          finish(statusError(Code.CANCELLED, "cancelled"));
        },
        { once: true },
      );
      let status: ReturnType<typeof statusFromHeaders> | undefined;
      stream.on("response", (h) => {
        this.lastResponse = performance.now();
        const httpStatus = Number(h[":status"]);
        if (h["grpc-status"] !== undefined)
          status = statusFromHeaders(h); // trailers-only
        else if (httpStatus !== 200)
          status = { code: Code.UNKNOWN, message: `HTTP status ${httpStatus}`, md: {} };
      });
      stream.on("trailers", (h) => {
        status = statusFromHeaders(h);
      });
      stream.on("data", (c: Buffer) => {
        received += c.length;
        if (received > maxBytes) {
          stream.close();
          finish(statusError(Code.RESOURCE_EXHAUSTED, `the response is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      stream.on("error", (err: NodeJS.ErrnoException) => {
        finish(statusError(Code.UNAVAILABLE, this.sessionError?.message ?? err.message));
      });
      stream.on("close", () => {
        if (!status) {
          const why = this.sessionError?.message ?? "the connection closed without a status";
          finish(statusError(Code.UNAVAILABLE, why));
          return;
        }
        if (status.code !== Code.OK) {
          finish(statusError(status.code, status.message, status.md));
          return;
        }
        try {
          finish(undefined, unframe(Buffer.concat(chunks)));
        } catch (err) {
          finish(err);
        }
      });
      stream.end(frame(request));
    });
  }

  /**
   * Opens a streaming call to `path` on the shared session; h2-duplex.ts
   * frames its messages and reads its status. No deadline: streams (exec)
   * last as long as the user's command.
   */
  async request(path: string): Promise<ClientHttp2Stream> {
    const session = await this.open();
    return session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      "user-agent": this.opts.userAgent ?? "protoctl-cli",
    });
  }

  /** Why the session failed, when it did (a stream that closed without a status says so). */
  get lastError(): string | undefined {
    return this.sessionError?.message;
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
