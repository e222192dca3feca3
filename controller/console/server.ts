/**
 * The web console: HTTPS with the controller's cluster certificate, a
 * static bundle (built by `npm run build` into dist/console/), and a small
 * read-only JSON/SSE API behind a session cookie:
 *   POST /api/session            {token} -> cookie (see sessions.ts)
 *   GET  /api/live               SSE: "state" (whole picture), "events"
 *   GET  /api/envs/NAME          spec and status (describe)
 *   GET  /api/envs/NAME/logs     SSE: the env's log tail, then follows
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { failedPrecondition } from "../../common/errors.js";
import { splitHostPort } from "../../common/metrics/listen-address.js";
import { EnvSpec, EnvStatus } from "../../proto/gen/protoctl/v1/types.js";
import { agentFor } from "../agents/call.js";
import type { ControllerContext } from "../context.js";
import type { IdentityDirectory } from "../users/directory.js";
import { ConsoleLive } from "./live.js";
import { ConsoleSessions, SESSION_MS } from "./sessions.js";

export interface RunningConsole {
  /** e.g. https://127.0.0.1:7445/ */
  url: string;
  close(): Promise<void>;
}

const COOKIE = "protoctl_console";
const STATIC: Record<string, string> = {
  "/": "index.html",
  "/index.html": "index.html",
  "/app.js": "app.js",
  "/app.css": "app.css",
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** dist/console next to the built controller, or the repo's dist/console when run from source. */
export function bundleDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, "../../console"), resolve(here, "../../dist/console")];
  return candidates.find((d) => existsSync(join(d, "index.html"))) ?? candidates[0]!;
}

export async function startConsole(
  ctx: ControllerContext,
  directory: IdentityDirectory,
  cluster: () => string,
): Promise<RunningConsole> {
  const tls = ctx.tls;
  if (!tls) {
    throw failedPrecondition("the web console needs the controller's TLS (it runs --insecure)", {
      reason: "CONFIG_INVALID",
      hint: "turn console.listen off, or run the controller with TLS",
    });
  }
  const { host, port } = splitHostPort(ctx.config.console.listen);
  const sessions = new ConsoleSessions(tls.ca.certPem, directory, cluster);
  const live = new ConsoleLive(ctx, cluster);
  const dir = bundleDir();
  const open = new Set<ServerResponse>();
  const server = createServer(
    { cert: tls.self.certPem + tls.ca.certPem, key: tls.self.keyPem },
    (req, res) => {
      handle(req, res).catch((err: Error) => {
        if (!res.headersSent) json(res, 500, { error: err.message });
        else res.end();
      });
    },
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "https://console");
    const file = STATIC[url.pathname];
    if (req.method === "GET" && file) {
      const body = await readFile(join(dir, file)).catch(() => undefined);
      if (!body) return json(res, 503, { error: "the console bundle is not built (npm run build)" });
      res.writeHead(200, { "content-type": TYPES[file.split(".").pop()!]!, ...SECURITY_HEADERS });
      res.end(body);
      return;
    }
    if (url.pathname === "/api/session" && req.method === "POST") return signIn(req, res);
    const sid = cookie(req, COOKIE);
    const session = await sessions.get(sid);
    if (!url.pathname.startsWith("/api/")) return json(res, 404, { error: "not found" });
    if (!session) return json(res, 401, { error: "sign in with the URL `protoctl console` prints" });
    if (url.pathname === "/api/session" && req.method === "GET") return json(res, 200, session);
    if (url.pathname === "/api/session" && req.method === "DELETE") {
      sessions.signOut(sid);
      res.writeHead(204, {
        "set-cookie": `${COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict`,
      });
      res.end();
      return;
    }
    if (req.method !== "GET") return json(res, 405, { error: "read-only console" });
    if (url.pathname === "/api/live") return liveStream(req, res);
    const m = /^\/api\/envs\/([a-z0-9][a-z0-9-]{0,62})(\/logs)?$/.exec(url.pathname);
    if (m) return m[2] ? logs(req, res, m[1]!) : describe(res, m[1]!);
    json(res, 404, { error: "not found" });
  }

  async function signIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, 32_768).catch(() => undefined);
    let token = "";
    try {
      token = String((JSON.parse(body ?? "{}") as { token?: unknown }).token ?? "");
    } catch {
      return json(res, 400, { error: 'expected {"token": ...}' });
    }
    const r = await sessions.signIn(token);
    if (!r.ok) {
      ctx.log.info({ why: r.why }, "console sign-in refused");
      return json(res, r.status, { error: r.why });
    }
    ctx.log.info({ user: r.session.user, role: r.session.role }, "console sign-in");
    res.writeHead(200, {
      "content-type": "application/json",
      "set-cookie": `${COOKIE}=${r.id}; Path=/; Max-Age=${SESSION_MS / 1000}; Secure; HttpOnly; SameSite=Strict`,
      ...SECURITY_HEADERS,
    });
    res.end(JSON.stringify(r.session));
  }

  function sse(res: ServerResponse): (event: string, data: unknown) => void {
    res.writeHead(200, {
      "content-type": "text/event-stream",
      ...SECURITY_HEADERS,
      connection: "keep-alive",
    });
    res.write(": protoctl console\n\n");
    open.add(res);
    res.on("close", () => open.delete(res));
    return (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  async function liveStream(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = sse(res);
    const ping = setInterval(() => res.write(": ping\n\n"), 15_000);
    const unsubscribe = await live.subscribe({
      state: (s) => send("state", s),
      events: (evs) => send("events", evs),
    });
    const recent = await ctx.store.events.list().catch(() => ({ events: [] }));
    send("events", recent.events.slice(-200));
    req.on("close", () => {
      clearInterval(ping);
      unsubscribe();
    });
  }

  async function describe(res: ServerResponse, name: string): Promise<void> {
    const [spec, status] = await Promise.all([ctx.store.envSpecs.get(name), ctx.store.envStatus.get(name)]);
    if (!spec && !status) return json(res, 404, { error: `env ${name} not found` });
    const clean = spec ? EnvSpec.toJSON({ ...spec.value, files: [], env: {} }) : undefined;
    json(res, 200, { name, spec: clean, status: status ? EnvStatus.toJSON(status.value) : undefined });
  }

  async function logs(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const status = await ctx.store.envStatus.get(name);
    if (!status?.value.node) return json(res, 409, { error: `env ${name} is not placed on a node` });
    const client = await agentFor(ctx, status.value.node);
    const send = sse(res);
    const up = client.logs({ env: name, follow: true, tailLines: 200 });
    req.on("close", () => up.cancel());
    up.on("data", (l: { stream: string; data: Buffer; timeMs: number }) =>
      send("line", { stream: l.stream, text: Buffer.from(l.data).toString("utf8"), timeMs: l.timeMs }),
    );
    up.on("error", (err: Error) => {
      if (!res.writableEnded) {
        send("failed", { error: err.message });
        res.end();
      }
    });
    up.on("end", () => res.end());
  }

  await new Promise<void>((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolveListen();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost =
    host === "0.0.0.0" || host === "::" ? "localhost" : host.includes(":") ? `[${host}]` : host;
  return {
    url: `https://${shownHost}:${bound}/`,
    close: async () => {
      await live.stop();
      for (const r of open) r.end();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", ...SECURITY_HEADERS });
  res.end(JSON.stringify(body));
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return v.join("=");
  }
  return undefined;
}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
      if (n > max) {
        reject(new Error("body too large"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolveBody(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
