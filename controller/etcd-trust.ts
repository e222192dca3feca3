/**
 * How far this replica can trust its etcd to keep secrets, and the rule that
 * follows for the cluster CA's private key (tls.caStore).
 *
 * With caStore=etcd the key is a plain value under cluster/ca-key: anyone who
 * can read etcd can sign an admin certificate. So the controller keeps it
 * there only when etcd requires a client certificate (TLS client auth): every
 * endpoint is https, this replica has a client cert and key, and a TLS
 * connection *without* a client certificate is refused (probed at start, so a
 * member started without --client-cert-auth is caught). Otherwise it refuses
 * to start unless etcd.insecure says the operator accepts it (tests, dev).
 */
import { readFileSync } from "node:fs";
import { Etcd3 } from "etcd3";
import { failedPrecondition } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { ControllerConfig } from "./config.js";

/** plaintext: some http:// endpoint; tls: https without a client cert; mtls: https with one. */
export type EtcdTransport = "plaintext" | "tls" | "mtls";

export function etcdTransport(etcd: ControllerConfig["etcd"]): EtcdTransport {
  if (etcd.endpoints.length === 0 || etcd.endpoints.some((e) => !/^https:\/\//i.test(e))) return "plaintext";
  return etcd.certFile && etcd.keyFile ? "mtls" : "tls";
}

/**
 * True when an etcd endpoint answers a read over TLS from a client that shows
 * no certificate (etcd runs without --client-cert-auth).
 */
export async function etcdAcceptsAnonymous(
  etcd: ControllerConfig["etcd"],
  timeoutMs = 3000,
): Promise<boolean> {
  const client = new Etcd3({
    hosts: etcd.endpoints,
    dialTimeout: timeoutMs,
    credentials: etcd.caFile ? { rootCertificate: readFileSync(etcd.caFile) } : undefined,
  });
  try {
    await Promise.race([
      client.get("protoctl-anonymous-probe").string(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("probe timed out")), timeoutMs).unref()),
    ]);
    return true;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

/**
 * Refuses caStore=etcd over an etcd that does not require client
 * certificates, unless etcd.insecure; logs a warning whenever the control
 * plane runs weakened (plaintext API, plaintext etcd, CA key in a readable etcd).
 */
export async function checkControlPlaneTrust(config: ControllerConfig, log: Logger): Promise<void> {
  const transport = etcdTransport(config.etcd);
  if (config.insecure) {
    log.warn(
      { listen: config.listen },
      "INSECURE: --insecure serves the API and calls agents in plaintext without authentication",
    );
  }
  if (transport === "plaintext") {
    log.warn({ endpoints: config.etcd.endpoints }, "INSECURE: etcd is reached in plaintext (http://)");
  }
  if (config.insecure || config.tls.caStore !== "etcd") return;
  let weak = transport !== "mtls";
  if (!weak && (await etcdAcceptsAnonymous(config.etcd))) weak = true;
  if (!weak) return;
  if (config.etcd.insecure) {
    log.warn(
      { endpoints: config.etcd.endpoints },
      "INSECURE: the cluster CA key is kept in an etcd that does not require client certificates (etcd.insecure)",
    );
    return;
  }
  throw failedPrecondition(
    "refusing to keep the cluster CA key in etcd: etcd does not require client certificates, so anyone who reaches it could sign an admin certificate",
    {
      reason: "ETCD_NOT_PRIVATE",
      hint: "give etcd --client-cert-auth and https endpoints and the controller etcd.caFile/certFile/keyFile, or set tls.caStore: disk, or accept it with --insecure-etcd (development only)",
    },
  );
}
