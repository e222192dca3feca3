/**
 * The checks of an EnvSpec's own fields that need no node: resources,
 * hostname, environment variables, files and startup commands (pure). The
 * controller runs them when a create arrives, so bad input is refused before
 * anything is recorded; the agent runs them again (with what only it can
 * check: the network against its links) before the spec reaches a path, a
 * file or an argv entry (agent/service/env-spec-check.ts).
 */
import { posix } from "node:path";
import type { EnvSpec } from "../proto/gen/protoctl/v1/types.js";
import { invalidArgument } from "./errors.js";

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A DNS host name (labels of a-z, 0-9 and inner "-", dot-separated). */
export const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const MAX_FILE_BYTES = 16 * 2 ** 20;
/** The smallest memory limit an env may have: below it systemd and most programs cannot start. */
export const MIN_MEMORY_BYTES = 8 * 2 ** 20;
/**
 * The smallest disk limit: the agent writes a few files into a new env (hostname, hosts,
 * seccomp copies) under the limit; measured, 64 KiB fails with EDQUOT and 256 KiB starts.
 */
export const MIN_DISK_BYTES = 2 ** 20;

function bad(message: string, reason = "INVALID_SPEC"): never {
  throw invalidArgument(message, { reason });
}

/** A relative, normalized path inside the env ("etc/app.conf"); leading "/" allowed and dropped. */
export function filePath(p: string): string {
  const rel = p.replace(/^\/+/, "");
  if (!rel || rel.includes("\0")) bad(`invalid file path ${JSON.stringify(p)}`, "INVALID_PATH");
  const norm = posix.normalize(rel);
  if (norm !== rel.replace(/\/+$/, "") || norm.startsWith("..") || norm.split("/").includes("..")) {
    bad(`file path ${JSON.stringify(p)} must be a plain path inside the env`, "INVALID_PATH");
  }
  return norm;
}

/** Throws INVALID_ARGUMENT for the first bad field; names are checked by the caller. */
export function checkSpecFields(spec: EnvSpec): void {
  if (spec.hostname && (!HOSTNAME.test(spec.hostname) || spec.hostname.length > 64)) {
    bad(`invalid hostname ${JSON.stringify(spec.hostname)}`);
  }
  for (const [k, v] of Object.entries(spec.env)) {
    if (!ENV_KEY.test(k)) bad(`invalid environment variable name ${JSON.stringify(k)}`);
    if (v.includes("\0")) bad(`environment variable ${k} holds a NUL byte`);
  }
  const r = spec.resources;
  if (r) {
    if (r.memoryBytes !== 0 && r.memoryBytes < MIN_MEMORY_BYTES)
      bad("memory limit below 8 MiB", "INVALID_RESOURCES");
    if (r.cpus < 0 || r.cpus > 1024 || Number.isNaN(r.cpus)) bad("cpus out of range", "INVALID_RESOURCES");
    if (r.pids < 0) bad("pids out of range", "INVALID_RESOURCES");
    if (r.diskBytes !== 0 && r.diskBytes < MIN_DISK_BYTES) bad("disk limit below 1 MiB", "INVALID_RESOURCES");
  }
  for (const f of spec.files) {
    filePath(f.path);
    if (f.content.length > MAX_FILE_BYTES) bad(`file ${f.path} is larger than 16 MiB`);
  }
  for (const c of spec.startup) if (c.includes("\0")) bad("startup command holds a NUL byte");
}
