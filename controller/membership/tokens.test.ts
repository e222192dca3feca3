import { describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { formatToken, hashSecret, hasUsesLeft, parseToken, spendWrite } from "./tokens.js";

describe("join tokens", () => {
  const fp = "ab".repeat(32);
  const secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t_x";

  it("round-trips with and without a CA fingerprint", () => {
    expect(parseToken(formatToken(secret, fp))).toEqual({ caFingerprint: fp, secret });
    expect(parseToken(formatToken(secret))).toEqual({ caFingerprint: undefined, secret });
  });

  it("rejects malformed tokens with INVALID_ARGUMENT", () => {
    for (const bad of [
      "",
      "protoctl1..x",
      `protoctl2.${fp}.${secret}`,
      `protoctl1.${fp}.short`,
      `protoctl1.XYZ.${secret}`,
    ]) {
      expect(() => parseToken(bad)).toThrow(
        expect.objectContaining({ code: Code.INVALID_ARGUMENT, reason: "TOKEN_MALFORMED" }),
      );
    }
  });

  it("stores only a hash of the secret", () => {
    expect(hashSecret(secret)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashSecret(secret)).not.toContain(secret);
  });
});

describe("spending a token", () => {
  const base = {
    record: { createdMs: 1, expiresMs: 2, labels: {}, usesLeft: 2, admitted: ["a"] },
    modRevision: 7,
    key: "/p/tokens/x",
    lease: "1234",
  };

  it("takes one use, remembers the node and stays on the token's lease", () => {
    const w = spendWrite(base, "b");
    expect(w).toMatchObject({ op: "put", key: "/p/tokens/x", lease: "1234" });
    const rec = JSON.parse((w as { value: Buffer }).value.toString());
    expect(rec).toMatchObject({ usesLeft: 1, admitted: ["a", "b"] });
    expect(hasUsesLeft(rec)).toBe(true);
    expect(hasUsesLeft({ ...rec, usesLeft: 0 })).toBe(false);
  });

  it("a reusable token has no count to take", () => {
    const { usesLeft: _, ...reusable } = base.record;
    const rec = JSON.parse(
      (spendWrite({ ...base, record: reusable }, "a") as { value: Buffer }).value.toString(),
    );
    expect(rec.usesLeft).toBeUndefined();
    expect(rec.admitted).toEqual(["a"]);
    expect(hasUsesLeft(rec)).toBe(true);
  });
});
