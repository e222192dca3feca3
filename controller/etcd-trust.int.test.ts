/**
 * The rule for the CA key in etcd (etcd-trust.ts) against real etcd
 * processes: plaintext, TLS without client authentication, and TLS with
 * --client-cert-auth (certificates made as `up` makes them).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureEtcdPki, etcdHealthy, etcdPki, etcdTlsArgs } from "../cli/up/etcd-pki.js";
import { StatePaths } from "../cli/up/state.js";
import { ProtoctlError } from "../common/errors.js";
import { silentLogger } from "../common/logger.js";
import { startEtcd, type TestEtcd } from "../test/fixtures/etcd.js";
import { freePort } from "../test/fixtures/ports.js";
import { controllerConfig } from "./config.js";
import { checkControlPlaneTrust, etcdAcceptsAnonymous, etcdTransport } from "./etcd-trust.js";

let dir: string;
let plain: TestEtcd;
const tlsEtcd: Record<"mtls" | "tls", { proc: ChildProcess; port: number }> = {} as never;
let pki: ReturnType<typeof etcdPki>;

async function startTlsEtcd(clientAuth: boolean, name: string) {
  const o = { etcdPort: await freePort(), etcdPeerPort: await freePort() };
  let args = etcdTlsArgs(o, join(dir, name), pki);
  // etcd turns client certificate checks on by itself when it has a trusted CA: drop both
  if (!clientAuth) {
    const i = args.indexOf("--trusted-ca-file");
    args = args.filter((a, j) => a !== "--client-cert-auth" && j !== i && j !== i + 1);
  }
  const proc = spawn("etcd", args, { stdio: "ignore" });
  const deadline = Date.now() + 20_000;
  while (!(await etcdHealthy(o.etcdPort, pki))) {
    if (Date.now() > deadline) throw new Error(`etcd (${name}) did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, port: o.etcdPort };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-etcd-trust-"));
  pki = etcdPki(new StatePaths(dir));
  await ensureEtcdPki(pki);
  plain = await startEtcd();
  tlsEtcd.mtls = await startTlsEtcd(true, "mtls");
  tlsEtcd.tls = await startTlsEtcd(false, "tls");
}, 60_000);

afterAll(async () => {
  await plain?.stop();
  for (const e of Object.values(tlsEtcd)) {
    e.proc.kill("SIGTERM");
    await new Promise((r) => (e.proc.exitCode === null ? e.proc.once("exit", r) : r(undefined)));
  }
  await rm(dir, { recursive: true, force: true });
});

const etcdCfg = (port: number, withCert: boolean) => ({
  endpoints: [`https://127.0.0.1:${port}`],
  caFile: pki.caFile,
  ...(withCert ? { certFile: pki.clientCert, keyFile: pki.clientKey } : {}),
});

async function refusal(p: Promise<unknown>): Promise<ProtoctlError | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return ProtoctlError.from(err);
  }
}

describe("the CA key is kept in etcd only when etcd requires client certificates", () => {
  it("classifies endpoints", () => {
    const c = controllerConfig();
    expect(etcdTransport(c.etcd)).toBe("plaintext");
    expect(etcdTransport({ ...c.etcd, ...etcdCfg(1, false) })).toBe("tls");
    expect(etcdTransport({ ...c.etcd, ...etcdCfg(1, true) })).toBe("mtls");
  });

  it("plaintext etcd: refused, unless etcd.insecure; caStore disk and --insecure are not concerned", async () => {
    const c = controllerConfig({ etcd: { endpoints: [plain.endpoint] }, tls: { caStore: "etcd" } });
    const err = await refusal(checkControlPlaneTrust(c, silentLogger()));
    expect(err?.reason).toBe("ETCD_NOT_PRIVATE");
    expect(err?.code).toBe(9); // FAILED_PRECONDITION
    await checkControlPlaneTrust({ ...c, etcd: { ...c.etcd, insecure: true } }, silentLogger());
    await checkControlPlaneTrust({ ...c, tls: { ...c.tls, caStore: "disk" } }, silentLogger());
    await checkControlPlaneTrust({ ...c, insecure: true }, silentLogger());
  });

  it("TLS etcd that lets in a client without a certificate: refused (probed)", async () => {
    const c = controllerConfig({ tls: { caStore: "etcd" } });
    const cfg = { ...c, etcd: { ...c.etcd, ...etcdCfg(tlsEtcd.tls.port, true) } };
    expect(await etcdAcceptsAnonymous(cfg.etcd)).toBe(true);
    expect((await refusal(checkControlPlaneTrust(cfg, silentLogger())))?.reason).toBe("ETCD_NOT_PRIVATE");
  }, 30_000);

  it("TLS etcd with --client-cert-auth: accepted; without a client cert of our own: refused", async () => {
    const c = controllerConfig({ tls: { caStore: "etcd" } });
    const cfg = { ...c, etcd: { ...c.etcd, ...etcdCfg(tlsEtcd.mtls.port, true) } };
    expect(await etcdAcceptsAnonymous(cfg.etcd)).toBe(false);
    await checkControlPlaneTrust(cfg, silentLogger());
    const noCert = { ...c, etcd: { ...c.etcd, ...etcdCfg(tlsEtcd.mtls.port, false) } };
    expect((await refusal(checkControlPlaneTrust(noCert, silentLogger())))?.reason).toBe("ETCD_NOT_PRIVATE");
  }, 30_000);
});
