/**
 * A gRPC server for unary methods only, on node:http2 without grpc-js: the
 * server side of common/h2-unary.ts, for the fake agents of bench/schedule.
 * There, 100 simulated agents share the 2 cores with the controller under
 * test, and grpc-js's per-call cost on their side (~0.08 ms) is a tax the
 * controller would not pay with its agents on other machines. The wire is
 * still gRPC (the controller cannot tell); streaming methods answer
 * UNIMPLEMENTED.
 *
 * With `tls` it serves mTLS like a real agent: the client must show a
 * certificate of the cluster CA (the handshake refuses others), and `allow`
 * decides once per connection (Node disables renegotiation on HTTP/2, so the
 * certificate is fixed) whether its holder may call: refused calls get
 * UNAUTHENTICATED or PERMISSION_DENIED as from common/tls.ts's interceptor.
 *
 * Handlers are grpc-js style `(call, callback)`, so the fake agent's
 * implementation object serves both ways.
 */
import {
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { TLSSocket } from "node:tls";
import { Metadata } from "@grpc/grpc-js";
import { Code, ERROR_DETAIL_KEY } from "../../common/errors.js";
import { frame, unframe } from "../../common/h2-unary.js";
import { type PeerIdentity, verifyPeerCert } from "../../common/tls.js";

interface MethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize(b: Buffer): unknown;
  responseSerialize(v: unknown): Buffer;
}

type UnaryHandler = (
  call: {
    request: unknown;
    metadata: Metadata;
    getPeer(): string;
    on(e: "cancelled", f: () => void): unknown;
  },
  cb: (err: { code?: number; details?: string; metadata?: Metadata } | null, res?: unknown) => void,
) => void;

export interface UnaryServerTls {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** Whether the peer (undefined: no certificate of the CA) may call; asked once per connection. */
  allow(peer: PeerIdentity | undefined): boolean;
}

export interface H2UnaryServer {
  port: number;
  close(): Promise<void>;
}

export async function serveUnary(
  service: Record<string, MethodDefinition>,
  impl: Record<string, unknown>,
  host: string,
  port = 0,
  tls?: UnaryServerTls,
): Promise<H2UnaryServer> {
  const routes = new Map<string, { def: MethodDefinition; handler: UnaryHandler }>();
  for (const [name, def] of Object.entries(service)) {
    const handler = impl[name];
    if (!def.requestStream && !def.responseStream && typeof handler === "function") {
      routes.set(def.path, { def, handler: handler as UnaryHandler });
    }
  }
  const server: Http2Server | Http2SecureServer = tls
    ? createSecureServer({
        ca: tls.caPem,
        cert: tls.certPem,
        key: tls.keyPem,
        requestCert: true,
        rejectUnauthorized: true,
      })
    : createServer();
  /** Per connection: undefined = may call, else the refusal. */
  const verdicts = new WeakMap<Http2Session, { code: number; message: string } | undefined>();
  const refusal = (session: Http2Session | undefined) => {
    if (!tls || !session) return undefined;
    if (verdicts.has(session)) return verdicts.get(session);
    const raw = (session.socket as TLSSocket).getPeerCertificate?.()?.raw;
    const peer = raw ? verifyPeerCert(raw, tls.caPem) : undefined;
    const verdict = tls.allow(peer)
      ? undefined
      : peer
        ? { code: Code.PERMISSION_DENIED, message: `${peer.role} ${peer.cn} may not call this agent` }
        : {
            code: Code.UNAUTHENTICATED,
            message: "a client certificate issued by the cluster CA is required",
          };
    verdicts.set(session, verdict);
    return verdict;
  };
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", (stream, headers) => {
    const route = routes.get(String(headers[":path"]));
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => undefined);
    stream.on("end", () => {
      const refused = refusal(stream.session);
      if (refused) {
        trailersOnly(stream, refused.code, refused.message);
        return;
      }
      if (!route) {
        trailersOnly(stream, Code.UNIMPLEMENTED, `${headers[":path"]} is not served here`);
        return;
      }
      let request: unknown;
      try {
        request = route.def.requestDeserialize(unframe(Buffer.concat(chunks)));
      } catch (err) {
        trailersOnly(stream, Code.INTERNAL, `bad request: ${(err as Error).message}`);
        return;
      }
      route.handler(
        { request, metadata: new Metadata(), getPeer: () => "", on: () => undefined },
        (err, res) => {
          if (stream.destroyed) return;
          if (err) {
            const detail = err.metadata?.get(ERROR_DETAIL_KEY)[0];
            trailersOnly(
              stream,
              err.code ?? Code.UNKNOWN,
              err.details ?? "error",
              detail as Buffer | undefined,
            );
            return;
          }
          stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
          stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          stream.end(frame(route.def.responseSerialize(res)));
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // open sessions keep close() waiting: end them
        for (const s of sessions) s.destroy();
      }),
  };
}

function trailersOnly(stream: ServerHttp2Stream, code: number, message: string, detail?: Buffer): void {
  if (stream.destroyed) return;
  const h: Record<string, string | number> = {
    ":status": 200,
    "content-type": "application/grpc",
    "grpc-status": String(code),
    "grpc-message": encodeURIComponent(message),
  };
  if (detail) h[ERROR_DETAIL_KEY] = detail.toString("base64");
  stream.respond(h, { endStream: true });
}
