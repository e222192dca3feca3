/**
 * The one key layout of protoctl's cluster state in etcd. Everything lives
 * under a prefix (default `/protoctl/v1/`; tests use a unique prefix each).
 * See README.md beside this file for the table and the reasons.
 *
 * Collections are top-level folders that never nest inside each other, so
 * that a prefix range over one never returns keys of another
 * (`envs/web/` is not a prefix of `envs/web-1/`).
 */
import { type ObjectKind, validateName } from "../../common/names.js";

export const DEFAULT_PREFIX = "/protoctl/v1/";

/** Top-level folders, in one place. */
export const FOLDERS = {
  nodes: "nodes/",
  nodeInventory: "node-inventory/",
  nodeAlive: "node-alive/",
  tokens: "tokens/",
  nodeIdentity: "node-identity/",
  users: "users/",
  revoked: "revoked/",
  bases: "bases/",
  baseVersions: "base-versions/",
  layers: "layers/",
  envSpecs: "env-specs/",
  envStatus: "env-status/",
  labs: "labs/",
  labState: "lab-state/",
  exports: "exports/",
  seeds: "seeds/",
  attachments: "attachments/",
  operations: "operations/",
  events: "events/",
  election: "election/",
  cluster: "cluster/",
} as const;

export type Folder = keyof typeof FOLDERS;

/** Builds and parses keys under one prefix. */
export class Keys {
  readonly prefix: string;

  constructor(prefix = DEFAULT_PREFIX) {
    this.prefix = prefix.endsWith("/") ? prefix : `${prefix}/`;
  }

  folder(f: Folder): string {
    return this.prefix + FOLDERS[f];
  }

  node(name: string): string {
    return this.folder("nodes") + checked(name);
  }
  nodeInventory(name: string): string {
    return this.folder("nodeInventory") + checked(name);
  }
  nodeAlive(name: string): string {
    return this.folder("nodeAlive") + checked(name);
  }
  /** Join tokens are stored under the hex sha256 of the secret, never the secret. */
  token(sha256hex: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256hex)) throw new Error("token key must be a sha256 hex digest");
    return this.folder("tokens") + sha256hex;
  }
  /** The certificate (serial) a node holds and the token that admitted it. */
  nodeIdentity(name: string): string {
    return this.folder("nodeIdentity") + checked(name);
  }
  user(name: string): string {
    return this.folder("users") + checked(name, "user");
  }
  /** A revoked certificate serial (lowercase hex). */
  revoked(serial: string): string {
    if (!/^[0-9a-f]{1,64}$/.test(serial)) throw new Error("serial must be lowercase hex");
    return this.folder("revoked") + serial;
  }
  base(name: string): string {
    return this.folder("bases") + checked(name, "base");
  }
  /** Versions sort numerically within a base thanks to zero padding. */
  baseVersion(name: string, version: number): string {
    return `${this.baseVersionsOf(name)}${pad(version, 10)}`;
  }
  baseVersionsOf(name: string): string {
    return `${this.folder("baseVersions")}${checked(name, "base")}/`;
  }
  layer(name: string): string {
    return this.folder("layers") + checked(name, "layer");
  }
  envSpec(name: string): string {
    return this.folder("envSpecs") + checked(name, "env");
  }
  envStatus(name: string): string {
    return this.folder("envStatus") + checked(name, "env");
  }
  lab(name: string): string {
    return this.folder("labs") + checked(name, "lab");
  }
  /** A lab's applied state (IPAM, VNIs, machines) and spec: see LabRecord in store.ts. */
  labState(name: string): string {
    return this.folder("labState") + checked(name, "lab");
  }
  export(base: string, version: number, node: string): string {
    return `${this.folder("exports")}${checked(base, "base")}@${version}/${checked(node)}`;
  }
  /** The seed image of base@N (one per version: published once, on its origin). */
  seed(base: string, version: number): string {
    return `${this.folder("seeds")}${checked(base, "base")}@${version}`;
  }
  attachment(base: string, version: number, node: string): string {
    return `${this.folder("attachments")}${checked(base, "base")}@${version}/${checked(node)}`;
  }
  /** A long operation (push, base deletion, lab hosts rewrite): spec + status, moved on by the leader. */
  operation(id: string): string {
    return this.folder("operations") + checked(id, "operation");
  }
  /** Events sort by time: 13-digit ms timestamp, then a per-writer sequence. */
  event(timeMs: number, writer: string, seq: number): string {
    return `${this.folder("events")}${pad(timeMs, 13)}-${writer}-${pad(seq, 8)}`;
  }
  election(name: string): string {
    return `${this.folder("election")}${name}/`;
  }
  cluster(item: "ca-cert" | "ca-key" | "id"): string {
    return this.folder("cluster") + item;
  }

  /** The last path segment of a key in a flat folder (the object's name). */
  nameOf(f: Folder, key: string): string | undefined {
    const p = this.folder(f);
    if (!key.startsWith(p)) return undefined;
    return key.slice(p.length);
  }

  /** (base, version) from a base-versions key. */
  parseBaseVersion(key: string): { base: string; version: number } | undefined {
    const rest = this.nameOf("baseVersions", key);
    const m = rest ? /^([a-z0-9][a-z0-9-]{0,62})\/([0-9]{10})$/.exec(rest) : null;
    return m ? { base: m[1]!, version: Number(m[2]) } : undefined;
  }
}

function checked(name: string, kind: ObjectKind = "node"): string {
  return validateName(kind, name);
}

function pad(n: number, width: number): string {
  return String(Math.max(0, Math.floor(n))).padStart(width, "0");
}

/** The end of a prefix range: the prefix with its last byte incremented (etcd's convention). */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = Buffer.from(b.subarray(0, i + 1));
      out[i] = b[i]! + 1;
      return out;
    }
  }
  return Buffer.from([0]);
}
