/**
 * The one authorization table of the ControlService: every method, the
 * least a caller must be, and whether the call changes state (and so goes
 * to the audit trail). The interceptor (auth-interceptor.ts) is the only
 * place that reads it; authz.test.ts fails when a method of the service has
 * no entry here.
 *
 * Levels: "open" (anyone, even without a certificate: JoinNode brings a
 * token instead, GetVersion tells nothing secret), "node" (an agent speaking
 * for itself: the handler checks the name), then users: viewer < operator <
 * admin. Controllers may call anything (they hold the CA already).
 * Operators manage envs and labs; nodes, users, tokens, bases and layers
 * (shared images every env is built from) are admin's.
 */

import type { Principal } from "../users/directory.js";
import type { UserRole } from "../users/records.js";

export type Level = "open" | "node" | UserRole;

export interface MethodRule {
  level: Level;
  /** Changes cluster state: recorded in the audit trail with caller and outcome. */
  mutates: boolean;
}

const read = (level: Level = "viewer"): MethodRule => ({ level, mutates: false });
const write = (level: Level): MethodRule => ({ level, mutates: true });

/** ControlService method name (as in the .proto) → rule. */
export const CONTROL_AUTHZ: Readonly<Record<string, MethodRule>> = {
  GetVersion: read("open"),
  // membership
  CreateJoinToken: write("admin"),
  JoinNode: write("open"),
  ListNodes: read(),
  GetNode: read(),
  CordonNode: write("admin"),
  UncordonNode: write("admin"),
  DrainNode: write("admin"),
  RemoveNode: write("admin"),
  Heartbeat: read("node"),
  // bases and layers
  ImportBase: write("admin"),
  BuildBase: write("admin"),
  UpdateBase: write("admin"),
  ListBases: read(),
  GetBase: read(),
  PushBase: write("admin"),
  DeleteBase: write("admin"),
  AddLayer: write("admin"),
  ListLayers: read(),
  GetLayer: read(),
  DeleteLayer: write("admin"),
  // envs
  CreateEnv: write("operator"),
  GetEnv: read(),
  ListEnvs: read(),
  StartEnv: write("operator"),
  StopEnv: write("operator"),
  DeleteEnv: write("operator"),
  // a snapshot becomes a new base version: bases are admin's
  SnapshotEnv: write("admin"),
  RollEnv: write("operator"),
  MoveEnv: write("operator"),
  ExtendEnv: write("operator"),
  // copying in writes like exec; copying out reads what exec could
  CopyToEnv: write("operator"),
  CopyFromEnv: write("operator"),
  ExecEnv: write("operator"),
  EnvLogs: read(),
  WatchEnvs: read(),
  // labs
  ApplyLab: write("operator"),
  DeleteLab: write("operator"),
  ListLabs: read(),
  GetLab: read(),
  LabGraph: read(),
  WatchEvents: read(),
  // users
  AddUser: write("admin"),
  ListUsers: read("admin"),
  RemoveUser: write("admin"),
};

const RANK: Record<UserRole, number> = { viewer: 1, operator: 2, admin: 3 };

/** "/protoctl.v1.ControlService/CreateEnv" → "CreateEnv". */
export function methodName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** The rule of a method path; undefined for a method the table does not know (refused). */
export function ruleOf(path: string): MethodRule | undefined {
  const name = methodName(path);
  return Object.hasOwn(CONTROL_AUTHZ, name) ? CONTROL_AUTHZ[name] : undefined;
}

/**
 * Whether `who` may call the method. With TLS off there are no identities
 * and the interceptor is not installed at all.
 */
export function allowed(rule: MethodRule | undefined, who: Principal): boolean {
  if (!rule) return false;
  if (rule.level === "open") return true;
  if (who.kind === "controller") return true;
  if (rule.level === "node") return who.kind === "node";
  if (who.kind !== "user") return false;
  const role = who.role as UserRole;
  return RANK[role] !== undefined && RANK[role] >= RANK[rule.level];
}
