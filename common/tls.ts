/**
 * The cluster's transport security: one CA per cluster, certificates issued
 * with the `openssl` CLI (through common/exec.ts) and keys from node:crypto,
 * gRPC credentials for both ends, and the peer identity of a call.
 *
 * Identity lives in the certificate subject: CN is the principal's name and
 * OU its role — "controller", "node" (an agent) or "admin" (a CLI user).
 * Agents accept calls only from role controller; the controller accepts
 * admin for everything, node for Heartbeat, and anyone for JoinNode and
 * GetVersion (a joining agent has no certificate yet: it checks the
 * controller's certificate against the CA fingerprint in its join token).
 *
 * Why the controller verifies client certificates itself instead of letting
 * TLS reject them: TLS cannot exempt one method (JoinNode) from client auth
 * on a shared port. The server asks for a certificate but lets the handshake
 * through; an interceptor then checks the certificate chains to the cluster
 * CA (signature, validity) before any handler runs. The TLS handshake has
 * already proven the peer holds the certificate's private key.
 */
import { createHash, generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import {
  ChannelCredentials,
  experimental,
  Metadata,
  ResponderBuilder,
  type ServerCredentials,
  ServerCredentials as ServerCreds,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
  status,
} from "@grpc/grpc-js";
import { ErrorDetail } from "../proto/gen/protoctl/v1/types.js";
import { writeFileAtomic } from "./atomic-file.js";
import { ERROR_DETAIL_KEY } from "./errors.js";
import { run } from "./exec.js";
import { sessionOf } from "./grpc-call-session.js";

/**
 * "admin" is the bootstrap credential `protoctl controller` writes
 * (admin.json); "user" certificates name a user whose role (admin, operator,
 * viewer) the controller keeps in etcd (controller/users/).
 */
export type Role = "controller" | "node" | "admin" | "user";

export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
}

/** What one end needs to talk TLS: the CA to trust and, for mTLS, its own cert and key. */
export interface TlsMaterial {
  caPem: string;
  certPem?: string;
  keyPem?: string;
}

export interface PeerIdentity {
  cn: string;
  role: Role | string;
  fingerprint: string;
  /** Certificate serial, lowercase hex without leading zeros (what revocation lists hold). */
  serial: string;
}

// ---- keys and certificates ----

/** A fresh P-256 private key, PKCS#8 PEM. */
export function generateKeyPem(): string {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

/** SHA-256 fingerprint (lowercase hex, no colons) of a certificate's DER. */
export function fingerprint(certPem: string): string {
  return createHash("sha256").update(new X509Certificate(certPem).raw).digest("hex");
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "protoctl-tls-"));
  await chmod(dir, 0o700);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Creates a new self-signed cluster CA (10 years). */
export async function createCa(name = "protoctl-ca"): Promise<CertificateAuthority> {
  const keyPem = generateKeyPem();
  return withTempDir(async (dir) => {
    const keyFile = join(dir, "ca.key");
    await writeFile(keyFile, keyPem, { mode: 0o600 });
    const res = await run("openssl", [
      "req",
      "-x509",
      "-new",
      "-key",
      keyFile,
      "-days",
      "3650",
      "-sha256",
      "-subj",
      `/O=protoctl/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    return { certPem: res.stdout.trim() + "\n", keyPem };
  });
}

/** A certificate signing request for CN/OU (the requester keeps the key). */
export async function createCsr(keyPem: string, cn: string, role: Role): Promise<string> {
  checkSubjectPart(cn);
  // the key goes through a private temp file: /dev/stdin cannot be opened when stdin is a socket
  return withTempDir(async (dir) => {
    const keyFile = join(dir, "key.pem");
    await writeFile(keyFile, keyPem, { mode: 0o600 });
    const res = await run("openssl", [
      "req",
      "-new",
      "-key",
      keyFile,
      "-subj",
      `/O=protoctl/OU=${role}/CN=${cn}`,
    ]);
    return `${res.stdout.trim()}\n`;
  });
}

export interface SignOptions {
  /** Overrides the CSR's subject: the CA decides who the holder is. */
  cn: string;
  role: Role;
  /** DNS names and IP addresses for serverAuth. */
  sans?: string[];
  days?: number;
}

/** Signs a CSR with the CA, imposing the subject and extensions (CSR extensions are ignored). */
export async function signCsr(ca: CertificateAuthority, csrPem: string, opts: SignOptions): Promise<string> {
  checkSubjectPart(opts.cn);
  return withTempDir(async (dir) => {
    const caCert = join(dir, "ca.crt");
    const caKey = join(dir, "ca.key");
    const ext = join(dir, "ext.cnf");
    await writeFile(caCert, ca.certPem);
    await writeFile(caKey, ca.keyPem, { mode: 0o600 });
    const sans = (opts.sans ?? []).map((s) => (/^[0-9.]+$|:/.test(s) ? `IP:${s}` : `DNS:${s}`));
    const lines = [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth,clientAuth",
    ];
    if (sans.length > 0) lines.push(`subjectAltName=${sans.join(",")}`);
    await writeFile(ext, `${lines.join("\n")}\n`);
    const csrFile = join(dir, "req.csr");
    await writeFile(csrFile, csrPem);
    const res = await run("openssl", [
      "x509",
      "-req",
      "-in",
      csrFile,
      "-CA",
      caCert,
      "-CAkey",
      caKey,
      "-set_serial",
      `0x${randomBytes(16).toString("hex")}`,
      "-days",
      String(opts.days ?? 825),
      "-sha256",
      "-subj",
      `/O=protoctl/OU=${opts.role}/CN=${opts.cn}`,
      "-extfile",
      ext,
    ]);
    return res.stdout.trim() + "\n";
  });
}

/** Key + certificate in one go (the CA side makes both; used for the controller and admin). */
export async function issue(
  ca: CertificateAuthority,
  opts: SignOptions,
): Promise<{ certPem: string; keyPem: string }> {
  const keyPem = generateKeyPem();
  const csr = await createCsr(keyPem, opts.cn, opts.role);
  return { keyPem, certPem: await signCsr(ca, csr, opts) };
}

function checkSubjectPart(s: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/.test(s))
    throw new Error(`invalid certificate name ${JSON.stringify(s)}`);
}

/** Loads the CA from dir (ca.crt, ca.key) or creates it there on first use. */
export async function loadOrCreateCaDir(dir: string): Promise<CertificateAuthority> {
  const certFile = join(dir, "ca.crt");
  const keyFile = join(dir, "ca.key");
  try {
    return { certPem: await readFile(certFile, "utf8"), keyPem: await readFile(keyFile, "utf8") };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createCa();
  await writeFile(keyFile, ca.keyPem, { mode: 0o600, flag: "wx" });
  await writeFile(certFile, ca.certPem, { mode: 0o644, flag: "wx" });
  return ca;
}

// ---- identity ----

/** Parses CN/OU out of a certificate and checks it was issued by the CA and is valid now. */
export function verifyPeerCert(
  raw: Buffer | string,
  caPem: string,
  now = new Date(),
): PeerIdentity | undefined {
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(raw);
    ca = new X509Certificate(caPem);
  } catch {
    return undefined;
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return undefined;
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) return undefined;
  const subject = parseSubject(cert.subject);
  if (!subject.CN) return undefined;
  const fp = createHash("sha256").update(cert.raw).digest("hex");
  return { cn: subject.CN, role: subject.OU ?? "", fingerprint: fp, serial: normalSerial(cert.serialNumber) };
}

/** Serial numbers compared as lowercase hex without leading zeros. */
export function normalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, "");
}

/** The serial of a PEM certificate, normalised like PeerIdentity.serial. */
export function certSerial(certPem: string): string {
  return normalSerial(new X509Certificate(certPem).serialNumber);
}

function parseSubject(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of s.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

interface HasAuthContext {
  getAuthContext?(): { sslPeerCertificate?: { raw?: Buffer } } | null | undefined;
}

/**
 * The verified identity of the peer of a server call, or undefined when the
 * call is not over TLS, carries no client certificate, or the certificate
 * does not chain to the CA.
 */
export function peerIdentity(call: HasAuthContext, caPem: string): PeerIdentity | undefined {
  const session = sessionOf(call);
  if (!session) {
    const raw = call.getAuthContext?.()?.sslPeerCertificate?.raw;
    return raw ? verifiedPeer(raw, caPem) : undefined;
  }
  // Node disables TLS renegotiation on HTTP/2 sockets, so a connection's peer certificate is
  // fixed: read it (grpc-js builds the whole certificate object on every getAuthContext, ~3 % of
  // the controller's CPU per API call) and verify it once per connection and CA. Only the
  // validity window is checked on every call.
  let seen = peerBySession.get(session);
  if (!seen || seen.caPem !== caPem) {
    const raw = call.getAuthContext?.()?.sslPeerCertificate?.raw;
    const id = raw ? verifiedPeer(raw, caPem) : undefined;
    const cert = id && raw ? new X509Certificate(raw) : undefined;
    seen = {
      caPem,
      id,
      from: cert ? Date.parse(cert.validFrom) : 0,
      to: cert ? Date.parse(cert.validTo) : 0,
    };
    peerBySession.set(session, seen);
  }
  const now = Date.now();
  return seen.id && now >= seen.from && now <= seen.to ? seen.id : undefined;
}

/** Per HTTP/2 session (one TLS connection): what its peer certificate verified as, for one CA. */
const peerBySession = new WeakMap<object, { caPem: string; id?: PeerIdentity; from: number; to: number }>();

/**
 * Certificates that verified, by CA and raw bytes, with their validity: a
 * client shows the same certificate on every call of its connection, and
 * parsing both certificates and checking the signature on each call was a
 * large part of an API call's cost over mTLS. Only successes are kept (and
 * at most VERIFIED_MAX per CA); the validity window is checked every call.
 */
const verified = new Map<string, Map<string, { id: PeerIdentity; from: number; to: number }>>();
const VERIFIED_MAX = 4096;

function verifiedPeer(raw: Buffer, caPem: string, now = Date.now()): PeerIdentity | undefined {
  let byCert = verified.get(caPem);
  const key = raw.toString("latin1");
  const hit = byCert?.get(key);
  if (hit) return now >= hit.from && now <= hit.to ? hit.id : undefined;
  const id = verifyPeerCert(raw, caPem, new Date(now));
  if (!id) return undefined;
  const cert = new X509Certificate(raw);
  if (!byCert || byCert.size >= VERIFIED_MAX) {
    byCert = new Map();
    verified.set(caPem, byCert);
  }
  byCert.set(key, { id, from: Date.parse(cert.validFrom), to: Date.parse(cert.validTo) });
  return id;
}

// ---- gRPC credentials ----

export interface ServerTlsOptions {
  /**
   * "require": TLS rejects clients without a CA-signed certificate (agents).
   * "request": a certificate is asked for but checked by `authInterceptor`
   * (controller: JoinNode must work without one).
   */
  clientAuth: "require" | "request";
}

/** Server credentials; insecure when `tls` is undefined (the --insecure path). */
export function serverCredentials(
  tls: TlsMaterial | undefined,
  opts: ServerTlsOptions = { clientAuth: "require" },
): ServerCredentials {
  if (!tls) return ServerCreds.createInsecure();
  if (!tls.certPem || !tls.keyPem) throw new Error("server TLS needs a certificate and key");
  if (opts.clientAuth === "require") {
    return ServerCreds.createSsl(
      Buffer.from(tls.caPem),
      [{ cert_chain: Buffer.from(tls.certPem), private_key: Buffer.from(tls.keyPem) }],
      true,
    );
  }
  const ca = Buffer.from(tls.caPem);
  const identity = { certificate: Buffer.from(tls.certPem), privateKey: Buffer.from(tls.keyPem) };
  const provider: experimental.CertificateProvider = {
    // grpc-js registers the provider's listeners before its own watcher: a
    // synchronous first update would reach no one, so deliver on the next tick
    addCaCertificateListener: (l) => setImmediate(() => l({ caCertificate: ca })),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (l) => setImmediate(() => l(identity)),
    removeIdentityCertificateListener: () => {},
  };
  return experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

export interface ClientTlsOptions {
  /** Expected server CN/SAN when dialing by an address the cert does not name. */
  serverName?: string;
  /** Accept the server when its certificate has this SHA-256 fingerprint or chains to one (join). */
  caFingerprint?: string;
  /** The role (subject OU) the server's certificate must carry, e.g. "controller". */
  serverRole?: Role;
}

/** Channel credentials; insecure when `tls` is undefined. */
export function clientCredentials(
  tls: TlsMaterial | undefined,
  opts: ClientTlsOptions = {},
): ChannelCredentials {
  if (!tls) return ChannelCredentials.createInsecure();
  return ChannelCredentials.createSsl(
    Buffer.from(tls.caPem),
    tls.keyPem ? Buffer.from(tls.keyPem) : null,
    tls.certPem ? Buffer.from(tls.certPem) : null,
    opts.serverName || opts.serverRole ? { checkServerIdentity: serverIdentityCheck(opts) } : undefined,
  );
}

/** The server check clientCredentials installs (name, then role), for other TLS clients (h2-unary). */
export function serverIdentityCheck(
  opts: ClientTlsOptions,
): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) =>
    (opts.serverName ? checkServerName(cert, opts.serverName) : checkServerIdentity(host, cert)) ??
    (opts.serverRole ? checkServerRole(cert, opts.serverRole) : undefined);
}

/** A server certificate of the wrong role (a node's certificate presented as a controller's) is refused. */
function checkServerRole(cert: PeerCertificate, role: Role): Error | undefined {
  const ou = (cert.subject as { OU?: string | string[] } | undefined)?.OU;
  const roles = Array.isArray(ou) ? ou : [ou];
  return roles.length === 1 && roles[0] === role
    ? undefined
    : new Error(`server certificate has role ${String(ou ?? "none")}, expected ${role}`);
}

function checkServerName(cert: PeerCertificate, name: string): Error | undefined {
  const cn = (cert.subject as { CN?: string | string[] } | undefined)?.CN;
  const names = [
    ...(Array.isArray(cn) ? cn : [cn]),
    ...(cert.subjectaltname ?? "").split(/,\s*/).map((s) => s.replace(/^(DNS|IP Address):/, "")),
  ];
  return names.includes(name) ? undefined : new Error(`server certificate does not name ${name}`);
}

/**
 * Server interceptor that refuses calls whose peer is not allowed. `allow`
 * gets the method path ("/protoctl.v1.ControlService/JoinNode") and the
 * verified identity (undefined without a valid certificate).
 */
export function authInterceptor(
  caPem: string,
  allow: (method: string, peer: PeerIdentity | undefined) => boolean,
): ServerInterceptor {
  return (methodDescriptor, call) => {
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((md, next) => {
        const peer = peerIdentity(call, caPem);
        if (allow(methodDescriptor.path, peer)) {
          next(md);
          return;
        }
        const code = peer ? status.PERMISSION_DENIED : status.UNAUTHENTICATED;
        const message = peer
          ? `${peer.role} ${peer.cn} may not call ${methodDescriptor.path}`
          : "a client certificate issued by the cluster CA is required";
        const metadata = new Metadata();
        metadata.set(
          ERROR_DETAIL_KEY,
          Buffer.from(
            ErrorDetail.encode({
              reason: peer ? "FORBIDDEN" : "NO_CREDENTIALS",
              hint: peer
                ? ""
                : "use the credential written by `protoctl up` or `protoctl controller` (admin.json)",
              subject: methodDescriptor.path,
              metadata: {},
              output: "",
            }).finish(),
          ),
        );
        call.sendStatus({ code, details: message, metadata });
      })
      .build();
    const responder = new ResponderBuilder().withStart((next) => next(listener)).build();
    return new ServerInterceptingCall(call, responder);
  };
}

/** Interceptor for agents: only the controller's identity may call. */
export function controllerOnly(caPem: string): ServerInterceptor {
  return authInterceptor(caPem, (_m, peer) => peer?.role === "controller");
}

// ---- credential files ----

/** A client credential file: what `protoctl up` copies into a CLI context. */
export interface CredentialFile {
  controller: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  /** Name the controller's certificate carries (dial by IP works too: SANs). */
  serverName?: string;
}

/**
 * Written whole or not at all: a reader polling for it (`protoctl up`) or a
 * writer killed half-way never leaves a truncated credential that the next
 * start would take as issued.
 */
export async function writeCredentialFile(path: string, c: CredentialFile): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(c, null, 2)}\n`, 0o600);
}

export async function readCredentialFile(path: string): Promise<CredentialFile> {
  return JSON.parse(await readFile(path, "utf8")) as CredentialFile;
}
