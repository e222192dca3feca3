/**
 * The opt-in `metrics.listen` endpoint of a daemon: GET /metrics in the
 * Prometheus text format. Plain HTTP only on a loopback address; anywhere
 * else it needs TLS, served with the daemon's cluster certificate and
 * requiring a client certificate from the cluster CA (docs/metrics.md).
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { invalidArgument } from "../errors.js";
import { isLoopbackHost, splitHostPort } from "./listen-address.js";

export interface MetricsServerOptions {
  /** "host:port"; port 0 picks a free one. */
  listen: string;
  registry: Registry;
  /** Serve HTTPS with this certificate; clients must show one issued by `caPem`. */
  tls?: { caPem: string; certPem: string; keyPem: string };
}

export interface RunningMetricsServer {
  /** Full URL of the metrics page, e.g. http://127.0.0.1:9464/metrics. */
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(o: MetricsServerOptions): Promise<RunningMetricsServer> {
  const { host, port } = splitHostPort(o.listen);
  if (!o.tls && !isLoopbackHost(host)) {
    throw invalidArgument(`metrics.listen ${o.listen} is not a loopback address and TLS is off`, {
      reason: "CONFIG_INVALID",
      hint: "listen on 127.0.0.1, or set metrics.tls: true (HTTPS, client certificates from the cluster CA)",
    });
  }
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    void serve(o.registry, req, res);
  };
  const server: Server = o.tls
    ? createHttpsServer(
        {
          ca: o.tls.caPem,
          cert: o.tls.certPem,
          key: o.tls.keyPem,
          requestCert: true,
          rejectUnauthorized: true,
        },
        handler,
      )
    : createHttpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `${o.tls ? "https" : "http"}://${shown}:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serve(registry: Registry, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method !== "GET" || path !== "/metrics") {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n");
    return;
  }
  try {
    const body = await registry.metrics();
    res.writeHead(200, { "content-type": registry.contentType }).end(body);
  } catch (err) {
    res
      .writeHead(500, { "content-type": "text/plain" })
      .end(`collecting metrics failed: ${(err as Error).message}\n`);
  }
}
