import { describe, expect, it } from "vitest";
import { makeConsoleToken } from "../../common/console-token.js";
import { createCa, issue, type PeerIdentity } from "../../common/tls.js";
import type { Principal, Refusal } from "../users/directory.js";
import { ConsoleSessions, type Directory } from "./sessions.js";

/** A directory that knows users by certificate CN, with roles and revocation. */
class Users implements Directory {
  readonly roles = new Map<string, Principal["role"]>();
  readonly revoked = new Set<string>();
  async resolve(peer: PeerIdentity): Promise<Principal | Refusal> {
    if (this.revoked.has(peer.cn))
      return { refused: true, reason: "CERT_REVOKED", message: `${peer.cn} revoked` };
    const role = this.roles.get(peer.cn);
    if (!role) return { refused: true, reason: "USER_UNKNOWN", message: `no user ${peer.cn}` };
    return { kind: role === "node" ? "node" : "user", name: peer.cn, role };
  }
}

describe("console sessions", async () => {
  const ca = await createCa();
  const other = await createCa();
  const alice = await issue(ca, { cn: "alice", role: "user", days: 1 });
  const node = await issue(ca, { cn: "n1", role: "node", days: 1 });
  const mallory = await issue(other, { cn: "alice", role: "user", days: 1 });
  const users = new Users();
  users.roles.set("alice", "viewer");
  users.roles.set("n1", "node");
  const sessions = new ConsoleSessions(ca.certPem, users, () => "c1");
  const token = (who: { certPem: string; keyPem: string }) => makeConsoleToken({ ...who, cluster: "c1" });

  it("a viewer signs in once per token and the session follows the directory", async () => {
    const t = token(alice);
    const r = await sessions.signIn(t);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.session).toMatchObject({ user: "alice", role: "viewer" });
    expect(await sessions.signIn(t)).toMatchObject({ ok: false, why: "token already used" });
    expect(await sessions.get(r.id)).toMatchObject({ user: "alice" });
    users.roles.set("alice", "operator");
    expect(await sessions.get(r.id)).toMatchObject({ role: "operator" });
    users.revoked.add("alice");
    expect(await sessions.get(r.id)).toBeUndefined();
    users.revoked.delete("alice");
    expect(await sessions.get(r.id)).toBeUndefined(); // gone for good
    expect(await sessions.get("made-up")).toBeUndefined();
  });

  it("refuses another CA's certificate, an unknown user and a node", async () => {
    expect(await sessions.signIn(token(mallory))).toMatchObject({ ok: false, status: 401 });
    users.roles.delete("alice");
    expect(await sessions.signIn(token(alice))).toMatchObject({
      ok: false,
      status: 401,
      why: "no user alice",
    });
    users.roles.set("alice", "viewer");
    expect(await sessions.signIn(token(node))).toMatchObject({ ok: false, status: 403 });
  });

  it("a session ends when it expires", async () => {
    const r = await sessions.signIn(token(alice));
    expect(r.ok).toBe(true);
    if (r.ok) expect(await sessions.get(r.id, r.session.expires + 1)).toBeUndefined();
  });
});
