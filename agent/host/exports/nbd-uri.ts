/**
 * NBD URIs as libnbd reads them (nbd:// plain, nbds:// TLS; the query
 * parameter tls-certificates= names the client's certificate directory).
 * Pure functions, unit-tested.
 */
import { invalidArgument } from "../../../common/errors.js";

export interface NbdUri {
  tls: boolean;
  host: string;
  port: number;
  exportName: string;
}

/** nbd://host:port/name (IPv6 hosts bracketed). */
export function formatNbdUri(u: NbdUri): string {
  const host = u.host.includes(":") ? `[${u.host}]` : u.host;
  return `${u.tls ? "nbds" : "nbd"}://${host}:${u.port}/${encodeURIComponent(u.exportName)}`;
}

export function parseNbdUri(uri: string): NbdUri {
  const m = /^(nbds?):\/\/(\[[^\]]+\]|[^/:?]+)(?::(\d+))?\/?([^?]*)(?:\?.*)?$/.exec(uri);
  if (!m) throw invalidArgument(`not an nbd:// or nbds:// URI: ${uri}`, { reason: "BAD_URI" });
  return {
    tls: m[1] === "nbds",
    host: m[2]!.replace(/^\[|\]$/g, ""),
    port: m[3] ? Number(m[3]) : 10809,
    exportName: decodeURIComponent(m[4] ?? ""),
  };
}

/** Adds the client certificate directory to an nbds:// URI (unchanged for nbd://). */
export function withClientTls(uri: string, certDir: string | undefined): string {
  if (!certDir || !uri.startsWith("nbds://")) return uri;
  // libnbd takes the path as is; refuse characters that would end the query value.
  if (/[?&#%\s]/.test(certDir)) throw invalidArgument(`unsupported characters in TLS directory ${certDir}`);
  const base = uri.replace(/\?.*$/, "");
  return `${base}?tls-certificates=${certDir}`;
}

/** Export names travel in URIs and qemu option strings: keep them boring. */
export function validateExportName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(name)) {
    throw invalidArgument(`invalid NBD export name ${JSON.stringify(name)}`, {
      reason: "BAD_EXPORT_NAME",
      hint: "use letters, digits, '.', '_', '@', '-' (up to 128)",
    });
  }
}
