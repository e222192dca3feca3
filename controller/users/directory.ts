/**
 * IdentityDirectory: one replica's view of who may speak, kept from etcd by
 * watches on `users/`, `node-identity/` and `revoked/` so that checking a
 * call costs no etcd round trip. A user removed on any replica is refused
 * here as soon as the watch delivers the delete (milliseconds); the replica
 * that removed it updates its own view before answering. A name missing
 * from the view (a user added a moment ago on another replica) is read from
 * etcd before the call is refused; while a watch is broken every check reads
 * etcd.
 */
import type { Logger } from "../../common/logger.js";
import type { PeerIdentity } from "../../common/tls.js";
import type { User } from "../../proto/gen/protoctl/v1/control.js";
import type { Folder } from "../store/keys.js";
import type { ClusterStore } from "../store/store.js";
import { identityCodecs, isUserRole, type NodeIdentityRecord, type UserRole } from "./records.js";

/** Who is calling, once the certificate has been checked against the directory. */
export interface Principal {
  kind: "user" | "node" | "controller" | "anonymous";
  name: string;
  role: UserRole | "node" | "controller" | "none";
}

export interface Refusal {
  refused: true;
  reason: "CERT_REVOKED" | "USER_UNKNOWN" | "CERT_SUPERSEDED" | "UNKNOWN_ROLE";
  message: string;
}

const RAW = { encode: (b: Buffer) => b, decode: (b: Buffer) => b };

export const ANONYMOUS: Principal = { kind: "anonymous", name: "", role: "none" };

export class IdentityDirectory {
  private readonly users = new Map<string, User>();
  private readonly nodes = new Map<string, NodeIdentityRecord>();
  private readonly revoked = new Set<string>();
  private healthy = false;
  private stopped = false;
  private cancels: Array<() => Promise<void>> = [];
  private retry?: NodeJS.Timeout;

  constructor(
    private readonly store: ClusterStore,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.load();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.unwatch();
  }

  /** The replica that revoked a serial sees it at once, before its own watch does. */
  noteRevoked(serial: string, user?: string): void {
    this.revoked.add(serial);
    if (user) this.users.delete(user);
  }

  noteUser(u: User): void {
    this.users.set(u.name, u);
  }

  async resolve(peer: PeerIdentity): Promise<Principal | Refusal> {
    if (await this.isRevoked(peer.serial)) {
      return { refused: true, reason: "CERT_REVOKED", message: `the certificate of ${peer.cn} was revoked` };
    }
    switch (peer.role) {
      case "controller":
        return { kind: "controller", name: peer.cn, role: "controller" };
      case "admin":
        // the bootstrap credential (admin.json) written by the controller on first start
        return { kind: "user", name: peer.cn, role: "admin" };
      case "user": {
        const u = await this.user(peer.cn);
        if (!u || u.serial !== peer.serial || !isUserRole(u.role)) {
          return {
            refused: true,
            reason: "USER_UNKNOWN",
            message: `user ${peer.cn} does not exist or holds another certificate`,
          };
        }
        return { kind: "user", name: u.name, role: u.role };
      }
      case "node": {
        const n = await this.node(peer.cn);
        // no record: a node that joined before node identities were recorded
        if (n && n.serial !== peer.serial) {
          return {
            refused: true,
            reason: "CERT_SUPERSEDED",
            message: `node ${peer.cn} holds a newer certificate than this one`,
          };
        }
        return { kind: "node", name: peer.cn, role: "node" };
      }
      default:
        return { refused: true, reason: "UNKNOWN_ROLE", message: `unknown certificate role ${peer.role}` };
    }
  }

  private async isRevoked(serial: string): Promise<boolean> {
    if (this.revoked.has(serial)) return true;
    if (this.healthy) return false;
    return (await this.store.kv.get(this.store.keys.revoked(serial), identityCodecs.revoked)) !== undefined;
  }

  private async user(name: string): Promise<User | undefined> {
    const u = this.users.get(name);
    if (u && this.healthy) return u;
    return (await this.store.kv.get(this.store.keys.user(name), identityCodecs.user))?.value;
  }

  private async node(name: string): Promise<NodeIdentityRecord | undefined> {
    const n = this.nodes.get(name);
    if (n && this.healthy) return n;
    return (await this.store.kv.get(this.store.keys.nodeIdentity(name), identityCodecs.node))?.value;
  }

  private async load(): Promise<void> {
    const s = this.store;
    const folders: Array<[Folder, (name: string, raw: Buffer | undefined) => void]> = [
      [
        "users",
        (n, raw) => (raw ? this.users.set(n, identityCodecs.user.decode(raw)) : this.users.delete(n)),
      ],
      [
        "nodeIdentity",
        (n, raw) => (raw ? this.nodes.set(n, identityCodecs.node.decode(raw)) : this.nodes.delete(n)),
      ],
      // a serial stays revoked in this view even if its key is deleted: revocation is not undone
      ["revoked", (n, raw) => raw && this.revoked.add(n)],
    ];
    for (const [folder, apply] of folders) {
      const prefix = s.keys.folder(folder);
      const r = await s.kv.list(prefix, RAW);
      for (const it of r.items) {
        try {
          apply(it.key.slice(prefix.length), it.value);
        } catch {
          // as above
        }
      }
      const cancel = await s.kv.watch(
        prefix,
        r.revision + 1,
        (evs) => {
          for (const e of evs) {
            try {
              apply(e.key.slice(prefix.length), e.type === "put" ? e.value : undefined);
            } catch {
              // a record that does not decode is left out of the view (the call is refused, not crashed)
            }
          }
        },
        (err) => this.broken(err),
      );
      this.cancels.push(cancel);
    }
    this.healthy = true;
  }

  private broken(err: Error): void {
    if (!this.healthy || this.stopped) return;
    this.healthy = false;
    this.log.warn({ err: err.message }, "identity watch broke; checking etcd on every call until it is back");
    const again = async () => {
      if (this.stopped) return;
      try {
        await this.unwatch();
        await this.load();
      } catch {
        this.retry = setTimeout(() => void again(), 1000);
      }
    };
    this.retry = setTimeout(() => void again(), 200);
  }

  private async unwatch(): Promise<void> {
    const cs = this.cancels;
    this.cancels = [];
    await Promise.all(cs.map((c) => c().catch(() => undefined)));
  }
}
