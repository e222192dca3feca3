/**
 * Host-wide unique names for an env's machine, cgroups and veth. Several
 * agents share one kernel (one /run, one cgroup tree, one set of links), so
 * every name carries the node; names come only from validated node and env
 * names, never from other user input.
 */
import { createHash } from "node:crypto";

/** nspawn machine names are hostnames: at most 64 characters. */
export const MACHINE_NAME_MAX = 64;

function shortHash(s: string, n: number): string {
  return createHash("sha256").update(s).digest("hex").slice(0, n);
}

/** `<env>-<8 hex of node>`; long env names are cut and get a hash of node and env instead. */
export function machineName(node: string, env: string): string {
  const suffix = shortHash(node, 8);
  if (env.length + 1 + suffix.length <= MACHINE_NAME_MAX) return `${env}-${suffix}`;
  return `${env.slice(0, MACHINE_NAME_MAX - 9).replace(/-+$/, "")}-${shortHash(`${node}/${env}`, 8)}`;
}

/** Host side of an env's veth: `vp` + 12 hex of node/env[/index] (14 chars, Linux allows 15). */
export function vethHostName(node: string, env: string, index = 0): string {
  return `vp${shortHash(index === 0 ? `${node}/${env}` : `${node}/${env}/${index}`, 12)}`;
}

/** Interface name inside the env. */
export const CONTAINER_IFACE = "host0";
