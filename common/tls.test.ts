import { lstat, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  createCa,
  createCsr,
  fingerprint,
  generateKeyPem,
  issue,
  readCredentialFile,
  signCsr,
  verifyPeerCert,
  writeCredentialFile,
} from "./tls.js";

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

describe("credential files", () => {
  it("are written whole with mode 0600, replacing an older one (a symlink too), leaving no temporary file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-cred-"));
    try {
      const file = join(dir, "admin.json");
      const target = join(dir, "elsewhere");
      await writeFile(target, "keep");
      await symlink(target, file);
      const cred = { controller: "127.0.0.1:7443", caPem: "ca", certPem: "cert", keyPem: "key" };
      await writeCredentialFile(file, cred);
      expect(await readCredentialFile(file)).toEqual(cred);
      expect((await lstat(file)).isFile()).toBe(true);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(await readFile(target, "utf8")).toBe("keep");
      await writeCredentialFile(file, { ...cred, certPem: "cert2" });
      expect((await readCredentialFile(file)).certPem).toBe("cert2");
      expect((await readdir(dir)).sort()).toEqual(["admin.json", "elsewhere"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
