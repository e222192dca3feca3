/**
 * Sign-in tokens for the web console. `protoctl console` signs a short
 * statement (cluster, expiry, nonce) with the user's own private key and
 * attaches the user's certificate; the controller checks the certificate
 * against the cluster CA and the user directory (role, revocation) exactly
 * as for a gRPC call, then the signature, the cluster and the expiry. No
 * secret travels that the user did not already hold, no RPC is needed to
 * mint one, and a leaked URL is worth at most TTL seconds and one sign-in
 * (the controller remembers nonces until they expire).
 */
import { createPrivateKey, randomBytes, sign, verify, X509Certificate } from "node:crypto";

export const CONSOLE_TOKEN_TTL_SECONDS = 300;
const PREFIX = "pct1";

export interface ConsoleTokenClaims {
  /** The cluster id the token is for (GetVersion's cluster). */
  cluster: string;
  /** Expiry, ms since the epoch. */
  exp: number;
  nonce: string;
  /** The signer's certificate (PEM). */
  cert: string;
}

const b64 = (b: Buffer | string) => Buffer.from(b).toString("base64url");

export function makeConsoleToken(
  o: { certPem: string; keyPem: string; cluster: string },
  now = Date.now(),
  ttlSeconds = CONSOLE_TOKEN_TTL_SECONDS,
): string {
  const claims: ConsoleTokenClaims = {
    cluster: o.cluster,
    exp: now + ttlSeconds * 1000,
    nonce: randomBytes(16).toString("hex"),
    cert: o.certPem,
  };
  const body = b64(JSON.stringify(claims));
  const sig = sign("sha256", Buffer.from(`${PREFIX}.${body}`), createPrivateKey(o.keyPem));
  return `${PREFIX}.${body}.${b64(sig)}`;
}

export type TokenCheck = { ok: true; claims: ConsoleTokenClaims } | { ok: false; why: string };

/**
 * Checks form, signature (by the certificate's key), cluster and expiry.
 * The caller still has to check the certificate itself (CA, directory).
 */
export function checkConsoleToken(token: string, cluster: string, now = Date.now()): TokenCheck {
  if (token.length > 16_384) return { ok: false, why: "token too long" };
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== PREFIX) return { ok: false, why: "not a console token" };
  let claims: ConsoleTokenClaims;
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as ConsoleTokenClaims;
  } catch {
    return { ok: false, why: "unreadable token" };
  }
  if (
    typeof claims?.cert !== "string" ||
    typeof claims.cluster !== "string" ||
    typeof claims.exp !== "number" ||
    typeof claims.nonce !== "string"
  )
    return { ok: false, why: "unreadable token" };
  let good = false;
  try {
    const key = new X509Certificate(claims.cert).publicKey;
    good = verify("sha256", Buffer.from(`${PREFIX}.${parts[1]}`), key, Buffer.from(parts[2]!, "base64url"));
  } catch {
    good = false;
  }
  if (!good) return { ok: false, why: "bad signature" };
  if (claims.cluster !== cluster) return { ok: false, why: "token is for another cluster" };
  if (claims.exp <= now) return { ok: false, why: "token expired" };
  if (claims.exp > now + 3600_000) return { ok: false, why: "token lives too long" };
  return { ok: true, claims };
}
