/**
 * What etcd keeps about identities besides nodes' registration: users
 * (`users/<name>`, the serial of the one certificate that speaks for the
 * user), nodes' certificates (`node-identity/<name>`), and the revocation
 * list (`revoked/<serial>`) every replica watches. A certificate is refused
 * once its serial is listed, whatever its role.
 */
import { User } from "../../proto/gen/protoctl/v1/control.js";
import { plainJson, protoJson } from "../store/codec.js";
import type { Write } from "../store/kv.js";
import type { ClusterStore } from "../store/store.js";

export type UserRole = "admin" | "operator" | "viewer";
export const USER_ROLES: readonly UserRole[] = ["viewer", "operator", "admin"];

export function isUserRole(s: string): s is UserRole {
  return (USER_ROLES as readonly string[]).includes(s);
}

/** The certificate a node currently holds (the join that issued it set it). */
export interface NodeIdentityRecord {
  serial: string;
  issuedMs: number;
  expiresMs: number;
  /** The certificate itself (public), handed back when the node re-joins by it. */
  certPem?: string;
}

export interface RevokedRecord {
  /** "user/alice", "node/n1". */
  subject: string;
  revokedMs: number;
}

export const identityCodecs = {
  user: protoJson(User),
  node: plainJson<NodeIdentityRecord>(),
  revoked: plainJson<RevokedRecord>(),
};

/** The write that puts a serial on the revocation list. */
export function revokeWrite(store: ClusterStore, serial: string, subject: string): Write {
  return {
    op: "put",
    key: store.keys.revoked(serial),
    value: identityCodecs.revoked.encode({ subject, revokedMs: Date.now() }),
  };
}
