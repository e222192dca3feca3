import { describe, expect, it } from "vitest";
import { checkConsoleToken, makeConsoleToken } from "./console-token.js";
import { createCa, issue } from "./tls.js";

describe("console tokens", async () => {
  const ca = await createCa();
  const alice = await issue(ca, { cn: "alice", role: "user", days: 1 });
  const bob = await issue(ca, { cn: "bob", role: "user", days: 1 });
  const now = Date.now();

  it("a token signed with the user's key checks out for its cluster until it expires", () => {
    const t = makeConsoleToken({ ...alice, cluster: "c1" }, now, 300);
    const r = checkConsoleToken(t, "c1", now + 1000);
    expect(r.ok && r.claims.cert).toBe(alice.certPem);
    expect(checkConsoleToken(t, "c2", now)).toEqual({ ok: false, why: "token is for another cluster" });
    expect(checkConsoleToken(t, "c1", now + 301_000)).toEqual({ ok: false, why: "token expired" });
  });

  it("refuses a certificate swapped in without its key, and garbage", () => {
    const t = makeConsoleToken({ ...alice, cluster: "c1" }, now);
    const [p, body, sig] = t.split(".");
    const claims = JSON.parse(Buffer.from(body!, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, cert: bob.certPem })).toString("base64url");
    expect(checkConsoleToken(`${p}.${forged}.${sig}`, "c1", now)).toEqual({
      ok: false,
      why: "bad signature",
    });
    expect(checkConsoleToken("nope", "c1").ok).toBe(false);
    expect(checkConsoleToken("pct1.e30.AAAA", "c1").ok).toBe(false);
  });

  it("refuses a token made to live longer than an hour", () => {
    const t = makeConsoleToken({ ...alice, cluster: "c1" }, now, 7200);
    expect(checkConsoleToken(t, "c1", now)).toEqual({ ok: false, why: "token lives too long" });
  });
});
