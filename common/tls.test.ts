import { describe, expect, it } from "vitest";
import { createCa, createCsr, fingerprint, generateKeyPem, issue, signCsr, verifyPeerCert } from "./tls.js";

describe("cluster CA and identities", () => {
  it("issues certificates whose subject the CA decides, and verifies them against the CA only", async () => {
    const ca = await createCa();
    const other = await createCa("other");
    const key = generateKeyPem();
    // the requester asks to be an admin; the CA signs it as node n1
    const csr = await createCsr(key, "admin", "admin");
    const cert = await signCsr(ca, csr, { cn: "n1", role: "node", sans: ["10.0.0.5", "n1"] });
    const id = verifyPeerCert(cert, ca.certPem);
    expect(id).toMatchObject({ cn: "n1", role: "node", fingerprint: fingerprint(cert) });
    expect(verifyPeerCert(cert, other.certPem)).toBeUndefined();
    const rogue = await issue(other, { cn: "admin", role: "admin" });
    expect(verifyPeerCert(rogue.certPem, ca.certPem)).toBeUndefined();
    expect(verifyPeerCert(cert, ca.certPem, new Date(Date.now() + 3 * 365 * 86400_000))).toBeUndefined();
  });

  it("refuses subject names that could inject into the openssl subject", async () => {
    const ca = await createCa();
    await expect(issue(ca, { cn: "a/OU=admin", role: "node" })).rejects.toThrow(/invalid certificate name/);
  });
});
