/**
 * The everyday web flow in boot mode: a Debian bookworm env booted with
 * systemd on a `private` network with `--port H:80`, an HTTP server inside
 * started as a systemd unit (busybox httpd: the host's busybox-static, written
 * in through the spec's files, as `files:` in a lab or `env cp` would), and
 * the page fetched from the host with curl on 127.0.0.1:H (the agent's
 * loopback listener) and on the node's own address (nspawn's DNAT).
 *
 * The rootfs comes from debootstrap once and is cached (test/fixtures/debian-rootfs.ts).
 */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { output, run } from "../../common/exec.js";
import { type Env, EnvPhase, EnvSpec, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import { cachedDebianRootfs } from "../../test/fixtures/debian-rootfs.js";
import { freePort } from "../../test/fixtures/ports.js";
import { BUSYBOX } from "../../test/fixtures/rootfs.js";
import {
  type AgentClient,
  agentClient,
  execOverGrpc,
  importDirBase,
  startLoopbackAgent,
  stopLoopbackAgent,
  unary,
} from "../../test/support/agent/agent-client.js";
import { detectHierarchies, envCgroupSet } from "../host/machines/cgroups.js";
import type { RunningAgent } from "../main.js";

const NODE = `bhttp${process.pid}`;
const PAGE = `hello from a booted env ${process.pid}\n`;
const UNIT = `[Unit]
Description=busybox httpd (protoctl test)
After=network.target

[Service]
ExecStart=/usr/local/bin/busybox httpd -f -p 80 -h /srv/www

[Install]
WantedBy=multi-user.target
`;

let stateDir: string;
let agent: RunningAgent | undefined;
let client: AgentClient;

beforeAll(async () => {
  const rootfs = await cachedDebianRootfs();
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-boot-http-"));
  agent = await startLoopbackAgent({ name: NODE, stateDir, poolMiB: 1536 });
  client = agentClient(agent.address);
  await importDirBase(client, "deb", rootfs);
}, 900_000);

afterAll(async () => {
  client?.close();
  await stopLoopbackAgent(agent);
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 120_000);

/** The host's own global IPv4 addresses (what a user calls the node's address). */
async function nodeAddresses(): Promise<string[]> {
  const text = await output("ip", ["-4", "-o", "addr", "show", "scope", "global"]);
  return [...text.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)]
    .map((m) => m[1]!)
    .filter((a) => !a.startsWith("10.213.")); // env host-side addresses are not the node's
}

/** curl's body, retried while the forward or the server comes up (their readiness is asynchronous). */
async function curlUntil(url: string, want: string): Promise<string> {
  let last = "";
  for (let i = 0; i < 60; i++) {
    const r = await run("curl", ["-sS", "--max-time", "3", url], { allowFailure: true });
    last = `${r.stdout}${r.stderr}`;
    if (r.exitCode === 0 && r.stdout === want) return r.stdout;
    await new Promise((res) => setTimeout(res, 250));
  }
  return last;
}

describe("booted Debian env serving HTTP on a forwarded port", () => {
  it("answers curl on 127.0.0.1:H and on the node's address, and nothing is left once deleted", async () => {
    const hostPort = await freePort();
    const spec = EnvSpec.fromPartial({
      name: "web",
      base: { name: "deb", version: 0 },
      start: true,
      boot: true,
      network: {
        mode: NetworkMode.NETWORK_MODE_PRIVATE,
        ports: [{ protocol: "tcp", hostPort, containerPort: 80 }],
      },
      files: [
        { path: "usr/local/bin/busybox", content: await readFile(BUSYBOX), mode: 0o755 },
        { path: "srv/www/index.html", content: Buffer.from(PAGE), mode: 0o644 },
        { path: "etc/systemd/system/protoctl-httpd.service", content: Buffer.from(UNIT), mode: 0o644 },
      ],
      startup: ["systemctl enable --now protoctl-httpd.service"],
    });
    const env = await unary<object, Env>(client, "createEnv", { spec, generation: 1 });
    expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    const [addr] = env.status?.addresses ?? [];
    expect(addr).toMatch(/^10\.213\.\d+\.\d+/);

    const exec = (command: string[]) => execOverGrpc(client, { env: "web", command });
    expect((await exec(["systemctl", "is-active", "protoctl-httpd.service"])).stdout.trim()).toBe("active");
    // the address the agent gave the env is on host0 inside, after systemd booted
    expect((await exec(["cat", "/proc/net/fib_trie"])).stdout).toContain(addr!.replace(/\/\d+$/, ""));

    expect(await curlUntil(`http://127.0.0.1:${hostPort}/`, PAGE)).toBe(PAGE);
    const addrs = await nodeAddresses();
    expect(addrs.length).toBeGreaterThan(0);
    for (const a of addrs) expect(await curlUntil(`http://${a}:${hostPort}/`, PAGE)).toBe(PAGE);

    await unary(client, "deleteEnv", { name: "web" });
    const gone = await run("curl", ["-sS", "--max-time", "3", `http://127.0.0.1:${hostPort}/`], {
      allowFailure: true,
    });
    expect(gone.exitCode).not.toBe(0);
    const set = envCgroupSet(detectHierarchies(), NODE, "web");
    for (const d of Object.values(set.dirs)) expect(existsSync(d)).toBe(false);
    expect(await readdir(join(agent!.ctx.pool.mountpoint, "@env"))).toEqual([]);
  }, 300_000);
});
