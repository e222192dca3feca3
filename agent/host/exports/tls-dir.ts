/**
 * qemu-nbd (tls-creds-x509 dir=) and libnbd (tls-certificates=) both want a
 * directory with fixed file names rather than three paths:
 *   server: ca-cert.pem server-cert.pem server-key.pem
 *   client: ca-cert.pem client-cert.pem client-key.pem
 * We make one with symlinks to the cluster's files, so a renewed certificate
 * is picked up by the next connection without copying keys around.
 */
import { mkdir, rm, symlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { TlsFiles } from "./types.js";

export type TlsRole = "server" | "client";

/** The file names qemu/gnutls and libnbd look for, per role (pure). */
export function tlsDirEntries(files: TlsFiles, role: TlsRole): Array<[name: string, target: string]> {
  return [
    ["ca-cert.pem", resolve(files.caFile)],
    [`${role}-cert.pem`, resolve(files.certFile)],
    [`${role}-key.pem`, resolve(files.keyFile)],
  ];
}

/** (Re)creates `dir` holding links named for `role`; returns `dir`. */
export async function makeTlsDir(dir: string, files: TlsFiles, role: TlsRole): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [name, target] of tlsDirEntries(files, role)) await symlink(target, join(dir, name));
  return dir;
}
