/**
 * Control-plane suite (issue 15, items 1 and 9): a real `protoctl up` (the
 * built CLI, its own state dir under /tmp, free loopback ports, its own
 * config dir) is closed to everyone but root and its own processes.
 *
 * - every listener of `up` is on loopback; etcd speaks only TLS and requires
 *   a client certificate; the cluster CA key is a 0600 file, not in etcd;
 * - a throwaway local user (useradd, removed after; commands run through
 *   setpriv) reads no key, credential or token and gets nothing from etcd,
 *   the controller or the agent (control-plane-probe.mjs);
 * - an env on a private network cannot connect to those ports;
 * - an agent with no TLS material and no --insecure refuses to start;
 * - a state dir made by the old `up` (plaintext etcd, CA key in etcd) is
 *   migrated by the next `up`.
 *
 * Set PROTOCTL_E2E_SKIP_BUILD=1 to reuse an existing dist/.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Etcd3 } from "etcd3";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, freeUpPorts, type UpPorts, upPortArgs } from "../fixtures/ports.js";
import { etcdAsController, listeners, probe } from "./control-plane-support.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "dist/cli/main.js");

let work: string;
let configHome: string;
const user = `pcprobe${randomBytes(3).toString("hex")}`;
let uid = 0;
let gid = 0;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], timeoutMs = 120_000): Promise<Result> {
  const r = await execa(process.execPath, [CLI, ...args], {
    env: {
      XDG_CONFIG_HOME: configHome,
      PROTOCTL_PLAIN: "1",
      PROTOCTL_CONTEXT: undefined,
      PROTOCTL_CONTROLLER: undefined,
    },
    extendEnv: true,
    stdin: "ignore",
    reject: false,
    timeout: timeoutMs,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

// every port, the console's and the metrics' too: their defaults may be taken by another `protoctl up`
const upArgs = (stateDir: string, p: UpPorts, node: string) => [
  "up",
  "--state-dir",
  stateDir,
  ...upPortArgs(p),
  "--node-name",
  node,
  "--pool-size",
  "1G",
];

const mode = (path: string) => statSync(path).mode & 0o777;

beforeAll(async () => {
  if (process.env.PROTOCTL_E2E_SKIP_BUILD !== "1") {
    await execa("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: ROOT, reject: false });
    await execa(process.execPath, ["cli/build/bundle.mjs"], { cwd: ROOT });
  }
  expect(existsSync(CLI)).toBe(true);
  work = await mkdtemp(join(tmpdir(), "protoctl-cp-"));
  // traversable by anyone: the only barrier left is the modes protoctl gives its own files
  await chmod(work, 0o755);
  configHome = join(work, "config");
  await mkdir(configHome, { mode: 0o755 });
  await execa("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user]);
  uid = Number((await execa("id", ["-u", user])).stdout);
  gid = Number((await execa("id", ["-g", user])).stdout);
}, 300_000);

afterAll(async () => {
  await execa("userdel", [user], { reject: false });
  for (const s of ["fresh", "old"]) {
    const stateDir = join(work ?? "/nonexistent", s);
    if (existsSync(stateDir)) await cli(["down", "--state-dir", stateDir], 180_000);
  }
  if (work) await rm(work, { recursive: true, force: true });
}, 300_000);

describe.sequential("protoctl up: a closed control plane", () => {
  let stateDir: string;
  let ports: UpPorts;
  const node = `cp-${randomBytes(3).toString("hex")}`;

  it("up listens on loopback only, etcd over TLS with client certificates", async () => {
    stateDir = join(work, "fresh");
    ports = await freeUpPorts();
    const r = await cli(upArgs(stateDir, ports, node), 180_000);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const ls = listeners(Object.values(ports));
    expect(new Set(ls.map((l) => l.port))).toEqual(new Set(Object.values(ports)));
    expect(ls.every((l) => l.address === "127.0.0.1")).toBe(true);
    // plaintext is not served at all
    const plain = await fetch(`http://127.0.0.1:${ports.etcd}/health`).catch((e: Error) => e);
    expect(plain).toBeInstanceOf(Error);
  }, 200_000);

  it("the CA key is a 0600 file in a 0700 dir, no etcd value holds a private key, state files are private", async () => {
    const caDir = join(stateDir, "controller/ca");
    expect(mode(caDir)).toBe(0o700);
    expect(mode(join(caDir, "ca.key"))).toBe(0o600);
    expect(statSync(join(caDir, "ca.key")).uid).toBe(0);
    for (const d of ["", "controller", "agent", "etcd", "etcd-pki", "run", "logs"])
      expect(mode(join(stateDir, d))).toBe(0o700);
    for (const f of ["up.json", "run/children.json", "controller/admin.json", "etcd-pki/controller.key"])
      expect(mode(join(stateDir, f))).toBe(0o600);
    const etcd = etcdAsController(stateDir, ports.etcd);
    try {
      const all = await etcd.getAll().prefix("").strings();
      expect(Object.keys(all)).toContain("/protoctl/v1/cluster/id");
      expect(Object.keys(all).filter((k) => k.includes("ca-key"))).toEqual([]);
      expect(Object.entries(all).filter(([, v]) => v.includes("PRIVATE KEY"))).toEqual([]);
    } finally {
      etcd.close();
    }
  });

  it("doctor and node describe report the set-up as closed", async () => {
    const d = await cli(["doctor", "-o", "json", "--no-vxlan-probe", "--state-dir", stateDir]);
    const rows = (
      JSON.parse(d.stdout) as { checks: Array<{ name: string; group: string; ok: boolean }> }
    ).checks
      .filter((c) => c.group === "security")
      .map((c) => [c.name, c.ok]);
    expect(rows).toEqual([
      ["etcd-access", true],
      ["ca-key", true],
      ["state-dir", true],
      ["control-tls", true],
      ["cli-context", true],
    ]);
    const n = await cli(["node", "describe", node, "-o", "json"]);
    const caps = (JSON.parse(n.stdout) as { capabilities: Array<{ name: string; ok: boolean }> })
      .capabilities;
    expect(caps.find((c) => c.name === "agent-tls")?.ok).toBe(true);
  }, 60_000);

  it("a local non-root user reads no key, credential or token and no API or etcd key answers it", async () => {
    const files = [
      join(stateDir, "controller/ca/ca.key"),
      join(stateDir, "controller/admin.json"),
      join(stateDir, "etcd-pki/controller.key"),
      join(stateDir, "etcd-pki/etcd.key"),
      join(stateDir, "agent/tls/node.key"),
      join(stateDir, "run/children.json"),
      join(stateDir, "etcd/member/snap/db"),
      join(configHome, "protoctl/config.yaml"),
    ];
    for (const f of files) expect(existsSync(f), f).toBe(true);
    const caPem = await readFile(join(stateDir, "controller/ca.crt"), "utf8");
    const admin = JSON.parse(await readFile(join(stateDir, "controller/admin.json"), "utf8"));

    // positive control: root with the admin credential gets through the same probe
    const asRoot = await probe("root", { files, ports, caPem, cert: admin });
    expect(asRoot.files[files[0]!]).toBe("read");
    expect(asRoot.controller.tls!.listNodes).toBe("ok");

    const p = await probe({ uid, gid }, { files, ports, caPem });
    expect(p.uid).toBe(uid);
    for (const f of files) expect(p.files[f], f).toBe("EACCES");
    // etcd: plaintext is no protocol it speaks; TLS without a client certificate is refused in the handshake
    expect(p.etcd.plaintext).toMatch(/^error|^status 400/);
    expect(p.etcd.tlsNoClientCert).toMatch(/^error/);
    // controller: plaintext fails (14 UNAVAILABLE); TLS without a certificate is UNAUTHENTICATED (16)
    expect(p.controller.plaintext!.listNodes).toMatch(/^code 14/);
    expect(p.controller.plaintext!.createJoinToken).toMatch(/^code 14/);
    expect(p.controller.tls!.listNodes).toMatch(/^code 16/);
    expect(p.controller.tls!.createJoinToken).toMatch(/^code 16/);
    // agent: the handshake itself requires a client certificate
    expect(p.agent.plaintext!.getInfo).toMatch(/^code 14/);
    expect(p.agent.tls!.getInfo).toMatch(/^code 14/);
  }, 120_000);

  it("from an env on a private network, etcd's, the controller's and the agent's ports are unreachable", async () => {
    expect((await cli(["base", "build", "cpbb", "--busybox"])).code).toBe(0);
    const made = await cli(["env", "create", "cp-priv", "--base", "cpbb", "--network", "private"]);
    expect(made.stderr).toBe("");
    expect(made.code).toBe(0);
    let control: Server | undefined;
    try {
      // `--network private` gives the env a veth to the host and a /32 from the node's private
      // range: the host is its link's IPv6 link-local address and the IPv4 gateway (the env's own
      // 127.0.0.1 is the env's loopback, not the host's)
      const route = await cli(["env", "exec", "cp-priv", "--", "ip", "-4", "route", "show", "default"]);
      const gateway = /default via (\S+)/.exec(route.stdout)?.[1];
      expect(gateway, route.stdout).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      const iflink = await cli(["env", "exec", "cp-priv", "--", "cat", "/sys/class/net/host0/iflink"]);
      const hostIf = readdirSync("/sys/class/net").find(
        (n) => readFileSync(`/sys/class/net/${n}/ifindex`, "utf8").trim() === iflink.stdout.trim(),
      );
      expect(hostIf, iflink.stdout).toBeDefined();
      const ll = networkInterfaces()[hostIf!]?.find(
        (a) => a.family === "IPv6" && a.address.startsWith("fe80"),
      );
      expect(ll).toBeDefined();
      // positive control: a listener on the host side of the env's link is reachable
      const controlPort = await freePort();
      const srv = createServer((s) => s.end());
      control = srv;
      // a fresh link-local address is unusable until duplicate address detection is done (~1-2 s)
      for (let i = 0; ; i++) {
        const err = await new Promise<Error | undefined>((res) => {
          srv.once("error", res);
          srv.listen(controlPort, `${ll!.address}%${hostIf}`, () => res(undefined));
        });
        if (!err) break;
        if (i > 50) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
      const hosts = [`${ll!.address}%host0`, gateway!, "127.0.0.1"];
      const pairs = hosts.flatMap((h) => Object.values(ports).map((p) => [h, String(p)]));
      const targets = pairs.map(([h, p]) => `${h}:${p}`);
      // host port pairs as arguments: one TCP connect each from inside the env
      // the first pair is the positive control: retried while the env's own link-local address
      // is still tentative (duplicate address detection inside, ~1-2 s), then each target once
      const script = [
        'i=0; until nc -w 2 "$1" "$2" </dev/null >/dev/null 2>&1 || [ $i -ge 20 ]; do i=$((i+1)); sleep 0.25; done',
        'while [ $# -gt 1 ]; do if nc -w 2 "$1" "$2" </dev/null >/dev/null 2>&1; then echo "$1:$2 open"; else echo "$1:$2 closed"; fi; shift 2; done',
      ].join("; ");
      const r = await cli([
        "env",
        "exec",
        "cp-priv",
        "--",
        "sh",
        "-c",
        script,
        "probe",
        hosts[0]!,
        String(controlPort),
        ...pairs.flat(),
      ]);
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split("\n");
      expect(lines[0]).toBe(`${hosts[0]}:${controlPort} open`);
      expect(lines.slice(1)).toEqual(targets.map((t) => `${t} closed`));
    } finally {
      await new Promise<void>((res) => (control?.listening ? control.close(() => res()) : res()));
      expect((await cli(["env", "rm", "cp-priv"])).code).toBe(0);
      expect((await cli(["base", "rm", "cpbb"])).code).toBe(0);
    }
  }, 180_000);

  it("an agent with no TLS material and no --insecure refuses to start, and makes nothing", async () => {
    const dir = join(work, "refused-agent");
    const port = await freePort();
    const r = await execa(
      process.execPath,
      [
        CLI,
        "agent",
        "--name",
        "refused",
        "--listen",
        `127.0.0.1:${port}`,
        "--state-dir",
        dir,
        "--pool-size",
        "512M",
      ],
      { reject: false, timeout: 60_000, env: { PROTOCTL_LOG_FORMAT: "json" } },
    );
    expect(r.exitCode).toBe(1);
    expect(`${r.stdout}${r.stderr}`).toContain("AGENT_NO_TLS");
    expect(`${r.stdout}${r.stderr}`).toContain("refusing to serve AgentService in plaintext");
    expect(existsSync(dir)).toBe(false);
    expect(listeners([port])).toEqual([]);
  }, 60_000);

  it("down removes it all", async () => {
    const r = await cli(["down", "--state-dir", stateDir], 180_000);
    expect(r.code).toBe(0);
    expect(existsSync(stateDir)).toBe(false);
  }, 200_000);
});

describe.sequential("migration of a state dir made by the old up", () => {
  let stateDir: string;
  let ports: UpPorts;
  const node = `cpm-${randomBytes(3).toString("hex")}`;
  let oldCaCert = "";
  let oldRevision = "";
  let oldAdmin = "";

  it("the old settings: plaintext etcd, the CA key in etcd", async () => {
    stateDir = join(work, "old");
    ports = await freeUpPorts();
    await mkdir(join(stateDir, "logs"), { recursive: true, mode: 0o755 });
    await chmod(stateDir, 0o755);
    const client = `http://127.0.0.1:${ports.etcd}`;
    const peer = `http://127.0.0.1:${ports.peer}`;
    // the command lines the old `up` wrote into run/children.json
    const etcd = execa(
      "etcd",
      [
        ...["--name", "protoctl-local", "--data-dir", join(stateDir, "etcd")],
        ...["--listen-client-urls", client, "--advertise-client-urls", client],
        ...["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer],
        ...["--initial-cluster", `protoctl-local=${peer}`, "--log-level", "warn"],
      ],
      { reject: false, stdio: "ignore" },
    );
    let controller: ResultPromise | undefined;
    try {
      controller = execa(
        process.execPath,
        [
          CLI,
          "controller",
          ...["--listen", `127.0.0.1:${ports.controller}`, "--etcd", client],
          ...["--state-dir", join(stateDir, "controller"), "--id", "local"],
          // the old default (caStore etcd over plaintext): today's controller needs it said aloud
          "--insecure-etcd",
        ],
        { reject: false, stdio: "ignore" },
      );
      const admin = join(stateDir, "controller/admin.json");
      const deadline = Date.now() + 60_000;
      while (!existsSync(admin)) {
        expect(Date.now() < deadline, "the old-style controller wrote no admin.json").toBe(true);
        await new Promise((r) => setTimeout(r, 200));
      }
      await new Promise((r) => setTimeout(r, 300));
      oldAdmin = await readFile(admin, "utf8");
      const kv = new Etcd3({ hosts: [client] });
      try {
        const res = await kv.get("/protoctl/v1/cluster/ca-key").exec();
        const ca = JSON.parse(res.kvs[0]!.value.toString()) as { certPem: string; keyPem: string };
        expect(ca.keyPem).toContain("PRIVATE KEY");
        oldCaCert = ca.certPem;
        oldRevision = res.kvs[0]!.mod_revision;
      } finally {
        kv.close();
      }
      // what the old supervisor ran, as `doctor` reads it
      await mkdir(join(stateDir, "run"), { recursive: true, mode: 0o755 });
      await writeFile(
        join(stateDir, "run/children.json"),
        JSON.stringify({
          children: [
            { name: "etcd", command: "etcd", args: ["--listen-client-urls", client] },
            { name: "controller", command: "node", args: ["controller", "--etcd", client] },
          ],
        }),
      );
      const d = await cli(["doctor", "-o", "json", "--no-vxlan-probe", "--state-dir", stateDir]);
      const warned = (
        JSON.parse(d.stdout) as { checks: Array<{ name: string; group: string; ok: boolean }> }
      ).checks
        .filter((c) => c.group === "security" && !c.ok)
        .map((c) => c.name);
      expect(warned).toEqual(["etcd-access", "ca-key", "state-dir"]);
      await writeFile(
        join(stateDir, "up.json"),
        JSON.stringify({ version: 1, stateDir, nodeName: node, etcdPort: ports.etcd }),
        { mode: 0o644 },
      );
    } finally {
      controller?.kill("SIGTERM");
      await controller;
      etcd.kill("SIGTERM");
      await etcd;
    }
  }, 120_000);

  it("the next up moves the key to disk, deletes it (and its history) from etcd and restarts etcd with TLS", async () => {
    const r = await cli(upArgs(stateDir, ports, node), 180_000);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("migrated this state dir: the cluster CA key moved from etcd to");
    const keyFile = join(stateDir, "controller/ca/ca.key");
    expect(mode(keyFile)).toBe(0o600);
    expect(mode(join(stateDir, "controller/ca"))).toBe(0o700);
    expect(await readFile(join(stateDir, "controller/ca/ca.crt"), "utf8")).toBe(oldCaCert);
    // the state made before stays private now
    expect(mode(stateDir)).toBe(0o700);
    expect(mode(join(stateDir, "logs"))).toBe(0o700);
    expect(await readFile(join(stateDir, "controller/admin.json"), "utf8")).toBe(oldAdmin);

    const etcd = etcdAsController(stateDir, ports.etcd);
    try {
      expect(await etcd.get("/protoctl/v1/cluster/ca-key").string()).toBeNull();
      // the old revision is compacted away: no history read returns the key
      await expect(etcd.get("/protoctl/v1/cluster/ca-key").revision(oldRevision).exec()).rejects.toThrow(
        /compacted/,
      );
    } finally {
      etcd.close();
    }
    const plain = await fetch(`http://127.0.0.1:${ports.etcd}/health`).catch((e: Error) => e);
    expect(plain).toBeInstanceOf(Error);
    // credentials issued before the migration still work: same CA
    const nodes = await cli(["node", "ls", "-q"]);
    expect(nodes.code).toBe(0);
    expect(nodes.stdout.trim()).toBe(node);
  }, 200_000);

  it("a second up has nothing left to migrate", async () => {
    const r = await cli(upArgs(stateDir, ports, node), 120_000);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("migrated");
    const d = await cli(["down", "--state-dir", stateDir], 180_000);
    expect(d.code).toBe(0);
    expect(existsSync(stateDir)).toBe(false);
  }, 300_000);
});
