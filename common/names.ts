/**
 * The one name rule for user objects (bases, layers, envs, labs, nodes,
 * networks): ^[a-z0-9][a-z0-9-]{0,62}$. Nothing user-given becomes a path,
 * a machine name or a command argument without passing through here.
 */
import { invalidArgument, notFound, type ProtoctlError } from "./errors.js";

export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export type ObjectKind =
  | "base"
  | "layer"
  | "env"
  | "lab"
  | "node"
  | "network"
  | "machine"
  | "context"
  | "user"
  | "operation";

/**
 * NOT_FOUND for a name the cluster does not know: "no base named x", reason
 * BASE_NOT_FOUND, subject `base/x` (or `base/<subjectName>`), and a hint to list them.
 */
export function noSuchObject(kind: ObjectKind, name: string, subjectName = name): ProtoctlError {
  return notFound(`no ${kind} named ${name}`, {
    reason: `${kind.toUpperCase()}_NOT_FOUND`,
    subject: `${kind}/${subjectName}`,
    hint: `see \`protoctl ${kind} ls\``,
  });
}

/** Returns the name when valid; throws INVALID_ARGUMENT naming the rule otherwise. */
export function validateName(kind: ObjectKind, name: unknown): string {
  if (typeof name !== "string" || name.length === 0) {
    throw invalidArgument(`${kind} name is empty`, {
      reason: "INVALID_NAME",
      hint: nameHint(),
      subject: kind,
    });
  }
  if (!NAME_PATTERN.test(name)) {
    const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
    throw invalidArgument(`invalid ${kind} name ${shown}`, {
      reason: "INVALID_NAME",
      hint: nameHint(),
      subject: `${kind}/${name.slice(0, 80)}`,
    });
  }
  return name;
}

export function isValidName(name: unknown): name is string {
  return typeof name === "string" && NAME_PATTERN.test(name);
}

function nameHint(): string {
  return "names are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit";
}

export interface VersionRef {
  name: string;
  /** 0 means "latest". */
  version: number;
}

/** Parses "name" or "name@N" (N >= 1) into a validated reference. */
export function parseVersionRef(kind: ObjectKind, ref: string): VersionRef {
  const at = ref.lastIndexOf("@");
  if (at < 0) return { name: validateName(kind, ref), version: 0 };
  const name = validateName(kind, ref.slice(0, at));
  const v = ref.slice(at + 1);
  if (!/^[1-9][0-9]{0,8}$/.test(v)) {
    throw invalidArgument(`invalid version in ${JSON.stringify(ref)}`, {
      reason: "INVALID_VERSION",
      hint: "write NAME or NAME@N with N a positive integer",
    });
  }
  return { name, version: Number(v) };
}

export function formatVersionRef(name: string, version: number): string {
  return version > 0 ? `${name}@${version}` : name;
}
