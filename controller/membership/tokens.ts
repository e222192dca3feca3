/**
 * Join tokens: `protoctl1.<ca-fingerprint | "insecure">.<secret>`. The secret
 * is 32 random bytes; etcd keeps only its SHA-256 (under tokens/<hash>, on a
 * lease that expires with the token), so reading etcd does not let anyone
 * join. The CA fingerprint lets a joining agent trust the controller's
 * certificate before it has the CA (as with `kubeadm join
 * --discovery-token-ca-cert-hash`).
 *
 * A token admits one join unless created with more uses or as reusable; the
 * use is spent in the same etcd transaction that records the node (see
 * join.ts), conditioned on the token's mod revision, so two joins racing on a
 * single-use token cannot both win. A token may be bound to a node name.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { invalidArgument, permissionDenied } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import type { Versioned, Write } from "../store/kv.js";
import { type ClusterStore, codecs, type TokenRecord } from "../store/store.js";

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

export interface CreateTokenOptions {
  ttlSeconds?: number;
  labels?: Record<string, string>;
  caFingerprint?: string;
  /** Joins it admits (default 1); ignored when reusable. */
  uses?: number;
  reusable?: boolean;
  node?: string;
  replace?: boolean;
}

export const MAX_TOKEN_USES = 10_000;

export async function createJoinToken(
  store: ClusterStore,
  opts: CreateTokenOptions,
): Promise<{ token: string; expiresMs: number; uses: number; node: string }> {
  const ttl = Math.min(Math.max(opts.ttlSeconds || 3600, 1), 30 * 24 * 3600);
  const uses = opts.reusable ? undefined : opts.uses || 1;
  if (uses !== undefined && (uses < 1 || uses > MAX_TOKEN_USES || !Number.isInteger(uses))) {
    throw invalidArgument(`token uses must be 1..${MAX_TOKEN_USES}`, { reason: "INVALID_USES" });
  }
  const node = opts.node ? validateName("node", opts.node) : undefined;
  if (opts.replace && !node) {
    throw invalidArgument("a replacing token must name the node it replaces", {
      reason: "REPLACE_NEEDS_NODE",
      hint: "protoctl node token --node NAME --replace",
    });
  }
  const secret = randomBytes(32).toString("base64url");
  const now = Date.now();
  const rec: TokenRecord = {
    createdMs: now,
    expiresMs: now + ttl * 1000,
    labels: opts.labels ?? {},
    ...(uses !== undefined ? { usesLeft: uses } : {}),
    ...(node ? { node } : {}),
    ...(opts.replace ? { replace: true } : {}),
    admitted: [],
  };
  await store.putToken(hashSecret(secret), rec, ttl);
  return {
    token: formatToken(secret, opts.caFingerprint),
    expiresMs: rec.expiresMs,
    uses: uses ?? 0,
    node: node ?? "",
  };
}

/** A token found valid for a join, and what spending it writes. */
export interface CheckedToken {
  record: TokenRecord;
  /** The token key's revision the spend is conditioned on. */
  modRevision: number;
  key: string;
  lease: string;
}

/**
 * Validates a token for a join under `name`; throws PERMISSION_DENIED when
 * unknown, expired, used up, from another cluster, or bound to another name.
 */
export async function checkJoinToken(
  store: ClusterStore,
  token: string,
  name: string,
  caFingerprint?: string,
): Promise<CheckedToken> {
  const parsed = parseToken(token);
  // with TLS on, a token must carry this cluster's CA fingerprint: one without
  // (or with another) was not made here
  if (caFingerprint && !(parsed.caFingerprint && safeEqual(parsed.caFingerprint, caFingerprint))) {
    throw permissionDenied("join token belongs to another cluster", {
      reason: "TOKEN_OTHER_CLUSTER",
      hint: "create a token on this cluster with `protoctl node token`",
    });
  }
  const cur: Versioned<TokenRecord> | undefined = await store.getTokenVersioned(hashSecret(parsed.secret));
  const rec = cur?.value;
  if (!cur || !rec || rec.expiresMs < Date.now()) {
    throw permissionDenied("join token is unknown or expired", {
      reason: "TOKEN_INVALID",
      hint: "create a new one with `protoctl node token`",
    });
  }
  if (rec.node && rec.node !== name) {
    throw permissionDenied(`join token is bound to node ${rec.node}`, {
      reason: "TOKEN_WRONG_NODE",
      subject: `node/${name}`,
    });
  }
  return { record: rec, modRevision: cur.modRevision, key: cur.key, lease: cur.lease };
}

/** True when the token may admit one more node. */
export function hasUsesLeft(rec: TokenRecord): boolean {
  return rec.usesLeft === undefined || rec.usesLeft > 0;
}

export function usedUp(name: string): Error {
  return permissionDenied("join token has been used", {
    reason: "TOKEN_USED",
    subject: `node/${name}`,
    hint: "create a new one with `protoctl node token` (`--uses N` or `--reusable` for several nodes)",
  });
}

/** The write that spends one use of the token for `name` (kept on its lease so it still expires). */
export function spendWrite(t: CheckedToken, name: string): Write {
  const rec: TokenRecord = {
    ...t.record,
    ...(t.record.usesLeft !== undefined ? { usesLeft: t.record.usesLeft - 1 } : {}),
    admitted: [...new Set([...(t.record.admitted ?? []), name])].slice(-1000),
  };
  return {
    op: "put",
    key: t.key,
    value: codecs.token.encode(rec),
    ...(t.lease && t.lease !== "0" ? { lease: t.lease } : {}),
  };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
