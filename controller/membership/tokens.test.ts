import { describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { formatToken, hashSecret, parseToken } from "./tokens.js";

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
