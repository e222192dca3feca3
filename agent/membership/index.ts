/**
 * The agent's side of membership: join the cluster with a token (getting a
 * signed certificate when the cluster uses TLS), then keep a heartbeat
 * stream open to a controller replica, carrying the node's inventory when it
 * changes. When the stream breaks the agent reconnects, trying every
 * controller address in turn with a short backoff, well inside the node
 * lease TTL so a controller failover does not make the node flap.
 *
 * Usage from agent/main.ts:
 *
 *   const m = await startMembership({ controller, token, name, address, labels, info, log,
 *                                     credentials: { dir: join(stateDir, "tls") } });
 *   // m.tls (when the cluster uses TLS): serve AgentService with
 *   //   serverCredentials(m.tls, { clientAuth: "require" }) + controllerOnly(m.tls.caPem)
 *   await m.stop();
 *
 * `joinCluster` is exported alone for an agent that needs its certificate
 * before it starts serving.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type PeerCertificate, connect as tlsConnect } from "node:tls";
import type { ChannelCredentials, ClientDuplexStream } from "@grpc/grpc-js";
import { callUnary } from "../../common/grpc.js";
import type { Logger } from "../../common/logger.js";
import {
  clientCredentials,
  createCsr,
  fingerprint,
  generateKeyPem,
  type TlsMaterial,
} from "../../common/tls.js";
import type { AgentInfo } from "../../proto/gen/protoctl/v1/agent.js";
import {
  ControlServiceClient,
  type HeartbeatAck,
  type NodeHeartbeat,
} from "../../proto/gen/protoctl/v1/control.js";

export interface MembershipCredentials {
  /** Directory to keep the node key, certificate and CA in (reused across restarts). */
  dir?: string;
  /** Material already at hand (takes precedence over dir). */
  tls?: TlsMaterial;
  /** Talk plaintext (a controller started with --insecure). */
  insecure?: boolean;
}

export interface MembershipOptions {
  /** Controller address(es), host:port; several replicas as an array or a comma list. */
  controller: string | string[];
  token: string;
  name: string;
  /** This agent's AgentService address as the controller should dial it. */
  address: string;
  labels?: Record<string, string>;
  credentials?: MembershipCredentials;
  info: () => Promise<AgentInfo>;
  log: Logger;
  /** Send interval; the controller's ack may lower it. Default 1000 ms. */
  intervalMs?: number;
  /** How often to ask `info()` for a fresh inventory. Default 5000 ms. */
  inventoryEveryMs?: number;
}

export interface Membership {
  node: string;
  /** The node's TLS material (role node) when the cluster uses TLS. */
  tls?: TlsMaterial & { certPem: string; keyPem: string };
  /** Sends fresh inventory with the next heartbeat (call after creating or deleting something). */
  refresh(): void;
  stop(): Promise<void>;
}

export function controllerAddresses(c: string | string[]): string[] {
  return (Array.isArray(c) ? c : c.split(",")).map((s) => s.trim()).filter(Boolean);
}

/**
 * Joins the cluster (JoinNode) and returns the node's TLS material when the
 * cluster uses TLS. An agent that already holds a certificate for its name
 * keeps it; the join still runs to record its current address and labels.
 */
export async function joinCluster(
  opts: Omit<MembershipOptions, "info" | "intervalMs" | "inventoryEveryMs">,
): Promise<(TlsMaterial & { certPem: string; keyPem: string }) | undefined> {
  const addrs = controllerAddresses(opts.controller);
  const fp = /^protoctl1\.([0-9a-f]{64})\./.exec(opts.token)?.[1];
  const insecure = opts.credentials?.insecure ?? (!fp && !opts.credentials?.tls);
  let saved =
    opts.credentials?.tls ?? (opts.credentials?.dir ? await loadDir(opts.credentials.dir) : undefined);
  let lastErr: unknown;
  for (const addr of addrs) {
    try {
      let creds: ChannelCredentials;
      let keyPem = saved?.keyPem ?? generateKeyPem();
      let caPem = saved?.caPem;
      if (insecure) creds = clientCredentials(undefined);
      else {
        if (!caPem) {
          if (!fp) throw new Error("the join token carries no CA fingerprint and no CA was given");
          caPem = await fetchCaByFingerprint(addr, fp);
        }
        // a saved certificate proves this is the node coming back (no token needed, see controller/membership/join.ts)
        const mine = saved?.certPem && saved.keyPem ? { certPem: saved.certPem, keyPem: saved.keyPem } : {};
        creds = clientCredentials(
          { caPem, ...mine },
          { serverName: "protoctl-controller", serverRole: "controller" },
        );
      }
      const client = new ControlServiceClient(addr, creds);
      try {
        const csrPem = insecure ? "" : await createCsr(keyPem, opts.name, "node");
        const res = await callUnary(
          client.joinNode.bind(client),
          {
            token: opts.token,
            name: opts.name,
            address: opts.address,
            csrPem,
            labels: opts.labels ?? {},
          },
          { deadlineMs: 15_000 },
        );
        if (insecure) return undefined;
        saved = { caPem: res.caPem || caPem!, certPem: res.certPem, keyPem };
        if (opts.credentials?.dir) await saveDir(opts.credentials.dir, saved as Required<TlsMaterial>);
        return saved as TlsMaterial & { certPem: string; keyPem: string };
      } finally {
        client.close();
        keyPem = "";
      }
    } catch (err) {
      lastErr = err;
      opts.log.warn({ controller: addr, err: (err as Error).message }, "join failed");
    }
  }
  throw lastErr ?? new Error("no controller address given");
}

export async function startMembership(opts: MembershipOptions): Promise<Membership> {
  const tls = await joinCluster(opts);
  const addrs = controllerAddresses(opts.controller);
  const creds = tls
    ? clientCredentials(tls, { serverName: "protoctl-controller", serverRole: "controller" })
    : clientCredentials(undefined);
  let intervalMs = opts.intervalMs ?? 1000;
  const inventoryEveryMs = opts.inventoryEveryMs ?? 5000;
  let stopped = false;
  let which = 0;
  let client: ControlServiceClient | undefined;
  let stream: ClientDuplexStream<NodeHeartbeat, HeartbeatAck> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let lastInventory = "";
  let lastInfoAt = 0;
  let forceInventory = true;
  let connected: ((ok: boolean) => void) | undefined;

  const inventory = async (): Promise<NodeHeartbeat> => {
    const info = await opts.info();
    lastInfoAt = Date.now();
    return {
      node: opts.name,
      address: opts.address,
      capacity: info.capacity,
      bases: info.bases,
      capabilities: info.capabilities,
      agentVersion: info.version,
      sentMs: Date.now(),
      inventory: true,
      foreignBases: [],
    };
  };

  let beating = false;
  let again = false;
  let early: NodeJS.Timeout | undefined;
  const beat = async () => {
    if (stopped || !stream) return;
    if (beating) {
      again = true;
      return;
    }
    beating = true;
    if (timer) clearTimeout(timer);
    try {
      await beatOnce();
    } finally {
      beating = false;
    }
    if (stopped || !stream) return;
    if (again) {
      again = false;
      timer = setTimeout(() => void beat(), 0);
    } else timer = setTimeout(() => void beat(), intervalMs);
  };

  const beatOnce = async () => {
    let msg: NodeHeartbeat = {
      node: opts.name,
      address: "",
      capacity: undefined,
      bases: [],
      capabilities: [],
      agentVersion: "",
      sentMs: Date.now(),
      inventory: false,
      foreignBases: [],
    };
    if (forceInventory || Date.now() - lastInfoAt >= inventoryEveryMs) {
      try {
        const inv = await inventory();
        const sig = JSON.stringify({ ...inv, sentMs: 0 });
        if (forceInventory || sig !== lastInventory) {
          msg = inv;
          lastInventory = sig;
          forceInventory = false;
        }
      } catch (err) {
        opts.log.warn({ err: (err as Error).message }, "could not read node info for heartbeat");
      }
    }
    if (stopped || !stream) return;
    stream.write(msg);
  };

  const connect = () => {
    if (stopped) return;
    const addr = addrs[which % addrs.length]!;
    client?.close();
    client = new ControlServiceClient(addr, creds);
    const s = client.heartbeat();
    stream = s;
    forceInventory = true;
    let acked = false;
    s.on("data", (ack: HeartbeatAck) => {
      if (!acked) {
        acked = true;
        opts.log.info({ controller: addr, replica: ack.controller }, "heartbeat stream established");
        connected?.(true);
        connected = undefined;
      }
      if (ack.intervalMs > 0) intervalMs = Math.min(ack.intervalMs, opts.intervalMs ?? ack.intervalMs);
    });
    const broken = (err?: Error) => {
      if (stream !== s) return;
      stream = undefined;
      if (timer) clearTimeout(timer);
      if (stopped) return;
      opts.log.warn({ controller: addr, err: err?.message }, "heartbeat stream broken; reconnecting");
      which++;
      const delay = acked ? 100 : Math.min(2000, 200 * Math.max(1, which));
      setTimeout(connect, delay);
    };
    s.on("error", broken);
    s.on("end", () => broken());
    void beat();
  };

  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error("no controller accepted the heartbeat stream within 15 s")),
      15_000,
    );
    connected = (ok) => {
      clearTimeout(t);
      if (ok) resolve();
    };
    connect();
  }).catch(async (err) => {
    stopped = true;
    stream?.cancel();
    client?.close();
    throw err;
  });

  return {
    node: opts.name,
    tls,
    // What changed reaches the controller within ~20 ms, not at the next tick: an env created
    // right after a base version appears here is placed without waiting out a heartbeat interval.
    refresh: () => {
      forceInventory = true;
      if (early || stopped || !stream) return;
      early = setTimeout(() => {
        early = undefined;
        void beat();
      }, 20);
    },
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (early) clearTimeout(early);
      const s = stream;
      stream = undefined;
      if (s) {
        s.end();
        s.cancel();
      }
      client?.close();
    },
  };
}

async function loadDir(dir: string): Promise<TlsMaterial | undefined> {
  try {
    return {
      caPem: await readFile(join(dir, "ca.crt"), "utf8"),
      certPem: await readFile(join(dir, "node.crt"), "utf8"),
      keyPem: await readFile(join(dir, "node.key"), "utf8"),
    };
  } catch {
    return undefined;
  }
}

async function saveDir(dir: string, m: Required<TlsMaterial>): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "node.key"), m.keyPem, { mode: 0o600 });
  await writeFile(join(dir, "node.crt"), m.certPem);
  await writeFile(join(dir, "ca.crt"), m.caPem);
}

/**
 * Reads the controller's certificate chain without trusting it, and returns
 * the CA certificate whose SHA-256 matches the fingerprint from the token.
 * The controller sends its certificate followed by the CA.
 */
export function fetchCaByFingerprint(address: string, fp: string): Promise<string> {
  const i = address.lastIndexOf(":");
  const host = address.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(i + 1));
  return new Promise((resolve, reject) => {
    const sock = tlsConnect(
      { host, port, rejectUnauthorized: false, ALPNProtocols: ["h2"], servername: "protoctl-controller" },
      () => {
        let cert: PeerCertificate | undefined = sock.getPeerCertificate(true);
        const seen = new Set<string>();
        while (cert?.raw && !seen.has(cert.fingerprint256)) {
          seen.add(cert.fingerprint256);
          const pem = toPem(cert.raw);
          if (fingerprint(pem) === fp) {
            sock.destroy();
            resolve(pem);
            return;
          }
          cert = (cert as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
        }
        sock.destroy();
        reject(new Error("the controller's certificate does not chain to the CA named in the join token"));
      },
    );
    sock.setTimeout(10_000, () => sock.destroy(new Error("timeout reading the controller certificate")));
    sock.on("error", reject);
  });
}

function toPem(der: Buffer): string {
  const b64 = der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
