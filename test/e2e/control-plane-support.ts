/**
 * Helpers of control-plane.int.test.ts: an etcd client with `up`'s
 * controller certificate, the listening sockets on some ports, and the probe
 * (control-plane-probe.mjs) run as a given user.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Etcd3 } from "etcd3";
import { execa } from "execa";

const PROBE = join(resolve(import.meta.dirname, "../.."), "test/e2e/control-plane-probe.mjs");

export interface Ports {
  etcd: number;
  peer: number;
  controller: number;
  agent: number;
}

/** An etcd client with `up`'s controller certificate (as root). */
export function etcdAsController(stateDir: string, port: number): Etcd3 {
  const pki = join(stateDir, "etcd-pki");
  return new Etcd3({
    hosts: [`https://127.0.0.1:${port}`],
    credentials: {
      rootCertificate: readFileSync(join(pki, "ca.crt")),
      certChain: readFileSync(join(pki, "controller.crt")),
      privateKey: readFileSync(join(pki, "controller.key")),
    },
  });
}

/** Local addresses of LISTEN sockets on `ports` (hex from /proc/net/tcp{,6}, decoded for IPv4). */
export function listeners(ports: number[]): Array<{ port: number; address: string }> {
  const out: Array<{ port: number; address: string }> = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== "0A" || !f[1]) continue;
      const [hexAddr, hexPort] = f[1].split(":") as [string, string];
      const port = Number.parseInt(hexPort, 16);
      if (!ports.includes(port)) continue;
      const address =
        hexAddr.length === 8
          ? (hexAddr.match(/../g) ?? [])
              .reverse()
              .map((b) => Number.parseInt(b, 16))
              .join(".")
          : `ipv6:${hexAddr}`;
      out.push({ port, address });
    }
  }
  return out;
}

/** Runs the probe as `as` (the throwaway user, or root with a client certificate). */
export async function probe(
  as: { uid: number; gid: number } | "root",
  args: { files: string[]; ports: Ports; caPem: string; cert?: { certPem: string; keyPem: string } },
): Promise<{
  uid: number;
  files: Record<string, string>;
  etcd: Record<string, string>;
  controller: Record<string, Record<string, string>>;
  agent: Record<string, Record<string, string>>;
}> {
  const json = JSON.stringify({
    files: args.files,
    etcdPort: args.ports.etcd,
    controllerPort: args.ports.controller,
    agentPort: args.ports.agent,
    caPem: args.caPem,
    cert: args.cert,
  });
  const cmd =
    as !== "root"
      ? [
          "setpriv",
          `--reuid=${as.uid}`,
          `--regid=${as.gid}`,
          "--clear-groups",
          "--",
          process.execPath,
          PROBE,
          json,
        ]
      : [process.execPath, PROBE, json];
  const r = await execa(cmd[0]!, cmd.slice(1), { reject: false, timeout: 60_000, env: { HOME: "/" } });
  if (r.exitCode !== 0) throw new Error(`probe failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(String(r.stdout));
}
