/**
 * Console sign-in: a token from `protoctl console` (common/console-token.ts)
 * becomes a session cookie. The token's certificate must be valid for the
 * cluster CA and pass the user directory (role, revocation) like any gRPC
 * caller, and its role must allow reading the fleet (ListEnvs). Each token
 * signs in once. Sessions live in this replica's memory for SESSION_MS.
 */
import { randomBytes } from "node:crypto";
import { checkConsoleToken } from "../../common/console-token.js";
import { verifyPeerCert } from "../../common/tls.js";
import { allowed, ruleOf } from "../server/authz.js";
import type { IdentityDirectory, Principal } from "../users/directory.js";

export const SESSION_MS = 8 * 3600_000;
const MAX_SESSIONS = 10_000;

export interface Session {
  user: string;
  role: string;
  expires: number;
}

export type SignIn = { ok: true; id: string; session: Session } | { ok: false; status: number; why: string };

export class ConsoleSessions {
  private readonly sessions = new Map<string, Session>();
  /** nonce -> token expiry: a token signs in once. */
  private readonly used = new Map<string, number>();

  constructor(
    private readonly caPem: string,
    private readonly directory: IdentityDirectory,
    private readonly cluster: () => string,
  ) {}

  async signIn(token: string, now = Date.now()): Promise<SignIn> {
    this.sweep(now);
    const t = checkConsoleToken(token, this.cluster(), now);
    if (!t.ok) return { ok: false, status: 401, why: t.why };
    const peer = verifyPeerCert(t.claims.cert, this.caPem, new Date(now));
    if (!peer) return { ok: false, status: 401, why: "certificate not issued by this cluster's CA" };
    const p = await this.directory.resolve(peer);
    if ("refused" in p) return { ok: false, status: 401, why: p.message };
    if (!allowed(ruleOf("/protoctl.v1.ControlService/ListEnvs"), p as Principal))
      return { ok: false, status: 403, why: `${p.name} (${p.role}) may not read the fleet` };
    if (this.used.has(t.claims.nonce)) return { ok: false, status: 401, why: "token already used" };
    if (this.sessions.size >= MAX_SESSIONS) return { ok: false, status: 503, why: "too many sessions" };
    this.used.set(t.claims.nonce, t.claims.exp);
    const id = randomBytes(32).toString("base64url");
    const session = { user: p.name, role: p.role, expires: now + SESSION_MS };
    this.sessions.set(id, session);
    return { ok: true, id, session };
  }

  get(id: string | undefined, now = Date.now()): Session | undefined {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.expires <= now) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  signOut(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  private sweep(now: number): void {
    for (const [n, exp] of this.used) if (exp <= now) this.used.delete(n);
    for (const [id, s] of this.sessions) if (s.expires <= now) this.sessions.delete(id);
  }
}
