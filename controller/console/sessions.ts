/**
 * Console sign-in: a token from `protoctl console` (common/console-token.ts)
 * becomes a session cookie. The token's certificate must be valid for the
 * cluster CA and pass the user directory (role, revocation) like any gRPC
 * caller, and its role must allow reading the fleet (ListEnvs). Each token
 * signs in once. Sessions live in this replica's memory for SESSION_MS, and
 * every request checks the certificate against the directory again, so a
 * revoked user or a lowered role takes effect at the next request.
 */
import { randomBytes } from "node:crypto";
import { checkConsoleToken } from "../../common/console-token.js";
import { type PeerIdentity, verifyPeerCert } from "../../common/tls.js";
import { allowed, ruleOf } from "../server/authz.js";
import type { IdentityDirectory, Principal } from "../users/directory.js";

export const SESSION_MS = 8 * 3600_000;
const MAX_SESSIONS = 10_000;

export interface Session {
  user: string;
  role: string;
  expires: number;
}

/** The directory as sessions use it (IdentityDirectory in the controller). */
export type Directory = Pick<IdentityDirectory, "resolve">;

export type SignIn = { ok: true; id: string; session: Session } | { ok: false; status: number; why: string };

export class ConsoleSessions {
  private readonly sessions = new Map<string, Session & { peer: PeerIdentity }>();
  /** nonce -> token expiry: a token signs in once. */
  private readonly used = new Map<string, number>();

  constructor(
    private readonly caPem: string,
    private readonly directory: Directory,
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
    if (!mayRead(p)) return { ok: false, status: 403, why: `${p.name} (${p.role}) may not read the fleet` };
    if (this.used.has(t.claims.nonce)) return { ok: false, status: 401, why: "token already used" };
    if (this.sessions.size >= MAX_SESSIONS) return { ok: false, status: 503, why: "too many sessions" };
    this.used.set(t.claims.nonce, t.claims.exp);
    const id = randomBytes(32).toString("base64url");
    const session = { user: p.name, role: p.role, expires: now + SESSION_MS };
    this.sessions.set(id, { ...session, peer });
    return { ok: true, id, session };
  }

  /** The live session of a cookie, checked against the directory again; undefined when gone. */
  async get(id: string | undefined, now = Date.now()): Promise<Session | undefined> {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const p = s.expires > now ? await this.directory.resolve(s.peer).catch(() => undefined) : undefined;
    if (!p || "refused" in p || !mayRead(p)) {
      this.sessions.delete(id);
      return undefined;
    }
    return { user: s.user, role: p.role, expires: s.expires };
  }

  signOut(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  private sweep(now: number): void {
    for (const [n, exp] of this.used) if (exp <= now) this.used.delete(n);
    for (const [id, s] of this.sessions) if (s.expires <= now) this.sessions.delete(id);
  }
}

function mayRead(p: Principal): boolean {
  return allowed(ruleOf("/protoctl.v1.ControlService/ListEnvs"), p);
}
