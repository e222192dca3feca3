import { X509Certificate } from "node:crypto";
import { describe, expect, it, vi } from "vitest";
import { createCa, fingerprint, issue, peerIdentity } from "./tls.js";

describe("peer identity of a call", () => {
  it("a call's peer certificate verified once is taken from memory, per CA and within its validity", async () => {
    const ca = await createCa();
    const other = await createCa("other");
    const { certPem } = await issue(ca, { cn: "alice", role: "admin" });
    const raw = new X509Certificate(certPem).raw;
    const call = { getAuthContext: () => ({ sslPeerCertificate: { raw: Buffer.from(raw) } }) };
    const first = peerIdentity(call, ca.certPem);
    expect(first).toMatchObject({ cn: "alice", role: "admin", fingerprint: fingerprint(certPem) });
    expect(peerIdentity(call, ca.certPem)).toEqual(first);
    // remembered for its CA only
    expect(peerIdentity(call, other.certPem)).toBeUndefined();
    vi.useFakeTimers();
    try {
      vi.setSystemTime(Date.now() + 3 * 365 * 86400_000);
      expect(peerIdentity(call, ca.certPem)).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
    expect(peerIdentity(call, ca.certPem)).toEqual(first);
    expect(peerIdentity({ getAuthContext: () => ({}) }, ca.certPem)).toBeUndefined();
  });
});
