/**
 * The CLI's check of the controller's certificate: the usual host-name
 * check, then the role in the subject's OU. A node's certificate is signed
 * by the same CA and may name the same host, so the name alone would let a
 * node stand in for the controller. (common/tls.ts has the same check; it is
 * repeated here because the CLI's unary path must not load grpc-js.)
 */
import { checkServerIdentity, type PeerCertificate } from "node:tls";

/** An IP literal (v4 or v6), told apart from a DNS name without net.isIP (see namesExactly). */
const IP_LITERAL = /^[0-9.]+$|:/;

/**
 * Whether the certificate names `name` exactly: a DNS entry of its subjectAltName, or its CN
 * when it has no DNS entry (the rule tls.checkServerIdentity applies). Why not just call that:
 * it tests the name with net.isIP, and the first test of a non-IP string compiles Node's IPv6
 * regular expression, which costs the CLI about as much as its TLS handshake. An exact match is
 * accepted by tls.checkServerIdentity too; anything else is left to it.
 */
function namesExactly(cert: PeerCertificate, name: string): boolean {
  if (IP_LITERAL.test(name)) return false;
  const want = name.toLowerCase();
  const dns = (cert.subjectaltname ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("DNS:"))
    .map((s) => s.slice(4).toLowerCase());
  if (dns.length > 0) return dns.includes(want);
  const cn = (cert.subject as { CN?: string | string[] } | undefined)?.CN;
  return typeof cn === "string" && cn.toLowerCase() === want;
}

function checkRole(cert: PeerCertificate): Error | undefined {
  const ou = (cert.subject as { OU?: string | string[] } | undefined)?.OU;
  return ou === "controller"
    ? undefined
    : new Error(`the server's certificate has role ${String(ou ?? "none")}, not controller`);
}

/**
 * The check for a context: with a server name, the certificate must name it (whatever host was
 * dialled, and whether or not it was sent as SNI); without one, the host dialled.
 */
export function controllerCertCheck(
  serverName: string | undefined,
): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const name = serverName || host;
    if (!namesExactly(cert, name)) {
      const err = checkServerIdentity(name, cert);
      if (err) return err;
    }
    return checkRole(cert);
  };
}

export function checkControllerCert(host: string, cert: PeerCertificate): Error | undefined {
  return controllerCertCheck(undefined)(host, cert);
}
