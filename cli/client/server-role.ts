/**
 * The CLI's check of the controller's certificate: the usual host-name
 * check, then the role in the subject's OU. A node's certificate is signed
 * by the same CA and may name the same host, so the name alone would let a
 * node stand in for the controller. (common/tls.ts has the same check; it is
 * repeated here because the CLI's unary path must not load grpc-js.)
 */
import { checkServerIdentity, type PeerCertificate } from "node:tls";

export function checkControllerCert(host: string, cert: PeerCertificate): Error | undefined {
  const err = checkServerIdentity(host, cert);
  if (err) return err;
  const ou = (cert.subject as { OU?: string | string[] } | undefined)?.OU;
  return ou === "controller"
    ? undefined
    : new Error(`the server's certificate has role ${String(ou ?? "none")}, not controller`);
}
