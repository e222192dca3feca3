/**
 * Join tokens: `protoctl1.<ca-fingerprint | "insecure">.<secret>`. The secret
 * is 32 random bytes; etcd keeps only its SHA-256 (under tokens/<hash>, on a
 * lease that expires with the token), so reading etcd does not let anyone
 * join. The CA fingerprint lets a joining agent trust the controller's
 * certificate before it has the CA (as with `kubeadm join
 * --discovery-token-ca-cert-hash`).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { invalidArgument, permissionDenied } from "../../common/errors.js";
import type { ClusterStore, TokenRecord } from "../store/store.js";

export const TOKEN_PREFIX = "protoctl1";

export interface ParsedToken {
  caFingerprint?: string;
  secret: string;
}

export function formatToken(secret: string, caFingerprint?: string): string {
  return `${TOKEN_PREFIX}.${caFingerprint ?? "insecure"}.${secret}`;
}

export function parseToken(token: string): ParsedToken {
  const m = /^protoctl1\.([0-9a-f]{64}|insecure)\.([A-Za-z0-9_-]{20,100})$/.exec(token.trim());
  if (!m) {
    throw invalidArgument("malformed join token", {
      reason: "TOKEN_MALFORMED",
      hint: "create one with `protoctl node token` and pass it whole",
    });
  }
  return { caFingerprint: m[1] === "insecure" ? undefined : m[1], secret: m[2]! };
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

export async function createJoinToken(
  store: ClusterStore,
  opts: { ttlSeconds?: number; labels?: Record<string, string>; caFingerprint?: string },
): Promise<{ token: string; expiresMs: number }> {
  const ttl = Math.min(Math.max(opts.ttlSeconds || 3600, 1), 30 * 24 * 3600);
  const secret = randomBytes(32).toString("base64url");
  const now = Date.now();
  const rec: TokenRecord = { createdMs: now, expiresMs: now + ttl * 1000, labels: opts.labels ?? {} };
  await store.putToken(hashSecret(secret), rec, ttl);
  return { token: formatToken(secret, opts.caFingerprint), expiresMs: rec.expiresMs };
}

/** Validates a token; returns its record or throws PERMISSION_DENIED (unknown or expired). */
export async function checkJoinToken(
  store: ClusterStore,
  token: string,
  caFingerprint?: string,
): Promise<TokenRecord> {
  const parsed = parseToken(token);
  if (caFingerprint && parsed.caFingerprint && !safeEqual(parsed.caFingerprint, caFingerprint)) {
    throw permissionDenied("join token belongs to another cluster", { reason: "TOKEN_INVALID" });
  }
  const rec = await store.getToken(hashSecret(parsed.secret));
  if (!rec || rec.expiresMs < Date.now()) {
    throw permissionDenied("join token is unknown or expired", {
      reason: "TOKEN_INVALID",
      hint: "create a new one with `protoctl node token`",
    });
  }
  return rec;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
