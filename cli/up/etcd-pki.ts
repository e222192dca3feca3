/**
 * `up`'s etcd is private to its controller: TLS on loopback with client
 * certificate authentication, client and peer side. Its certificates come
 * from a CA of its own (not the cluster CA): etcd trusts every certificate
 * its CA signed, and the cluster CA also signs node and user certificates,
 * which must not open etcd. The etcd CA's key is thrown away once the three
 * certificates exist: nothing can mint another etcd client certificate. When
 * a certificate is missing or near expiry, the whole set is made again (only
 * etcd and this controller use it; both are restarted by `up`).
 *
 *   <state>/etcd-pki/ (0700)  ca.crt, etcd.crt, etcd.key, controller.crt, controller.key (keys 0600)
 */
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { createCa, issue } from "../../common/tls.js";
import type { StatePaths } from "./state.js";

export interface EtcdPki {
  dir: string;
  caFile: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;

export function etcdPki(paths: StatePaths): EtcdPki {
  const dir = join(paths.root, "etcd-pki");
  return {
    dir,
    caFile: join(dir, "ca.crt"),
    serverCert: join(dir, "etcd.crt"),
    serverKey: join(dir, "etcd.key"),
    clientCert: join(dir, "controller.crt"),
    clientKey: join(dir, "controller.key"),
  };
}

function fresh(pki: EtcdPki, now = Date.now()): boolean {
  const files = [pki.caFile, pki.serverCert, pki.serverKey, pki.clientCert, pki.clientKey];
  if (!files.every((f) => existsSync(f))) return false;
  return [pki.serverCert, pki.clientCert].every((f) => {
    try {
      return new Date(new X509Certificate(readFileSync(f)).validTo).getTime() - now > RENEW_BEFORE_MS;
    } catch {
      return false;
    }
  });
}

/** Makes the etcd certificates when missing or near expiry; true when it (re)made them. */
export async function ensureEtcdPki(pki: EtcdPki): Promise<boolean> {
  await mkdir(pki.dir, { recursive: true, mode: 0o700 });
  await chmod(pki.dir, 0o700);
  if (fresh(pki)) return false;
  const ca = await createCa("protoctl-etcd-ca");
  // The role field only fills the subject's OU: no protoctl peer trusts this CA.
  const server = await issue(ca, { cn: "etcd", role: "controller", sans: ["127.0.0.1", "localhost"] });
  const client = await issue(ca, { cn: "controller", role: "controller" });
  const put = async (file: string, text: string, mode: number) => {
    const tmp = `${file}.tmp`;
    await rm(tmp, { force: true });
    await writeFile(tmp, text, { mode, flag: "wx" });
    await rename(tmp, file);
  };
  await put(pki.serverKey, server.keyPem, 0o600);
  await put(pki.clientKey, client.keyPem, 0o600);
  await put(pki.serverCert, server.certPem, 0o644);
  await put(pki.clientCert, client.certPem, 0o644);
  await put(pki.caFile, ca.certPem, 0o644);
  return true;
}

/** etcd's command line: client and peer URLs https on loopback, client certificates required on both. */
/** The one-member etcd of `up` on loopback ports, `scheme` http (migration only) or https. */
export function etcdMemberArgs(
  o: { etcdPort: number; etcdPeerPort: number },
  dataDir: string,
  scheme: "http" | "https",
): string[] {
  const client = `${scheme}://127.0.0.1:${o.etcdPort}`;
  const peer = `${scheme}://127.0.0.1:${o.etcdPeerPort}`;
  return [
    ...["--name", "protoctl-local", "--data-dir", dataDir],
    ...["--listen-client-urls", client, "--advertise-client-urls", client],
    ...["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer],
    ...["--initial-cluster", `protoctl-local=${peer}`],
  ];
}

export function etcdTlsArgs(o: { etcdPort: number; etcdPeerPort: number }, dataDir: string, pki: EtcdPki) {
  return [
    ...etcdMemberArgs(o, dataDir, "https"),
    "--client-cert-auth",
    "--trusted-ca-file",
    pki.caFile,
    "--cert-file",
    pki.serverCert,
    "--key-file",
    pki.serverKey,
    "--peer-client-cert-auth",
    "--peer-trusted-ca-file",
    pki.caFile,
    "--peer-cert-file",
    pki.serverCert,
    "--peer-key-file",
    pki.serverKey,
    "--log-level",
    "warn",
  ];
}

/** The controller's flags to reach that etcd. */
export function controllerEtcdArgs(port: number, pki: EtcdPki): string[] {
  return [
    "--etcd",
    `https://127.0.0.1:${port}`,
    "--etcd-ca",
    pki.caFile,
    "--etcd-cert",
    pki.clientCert,
    "--etcd-key",
    pki.clientKey,
    "--ca-store",
    "disk",
  ];
}

/** GET /health over TLS with the controller's client certificate. */
export function etcdHealthy(port: number, pki: EtcdPki, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/health",
        ca: readFileSync(pki.caFile),
        cert: readFileSync(pki.clientCert),
        key: readFileSync(pki.clientKey),
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve(false));
    req.end();
  });
}
