/**
 * Metrics and the web console on a real one-machine cluster from
 * `protoctl up` (own state dir under /tmp, free loopback ports, own CLI
 * config): `up` prints the console's and both metrics endpoints' URLs; the
 * figures on both endpoints move with the work (an env create, a push);
 * Debian's chromium, driven by playwright-core, signs in with the link
 * `protoctl console` prints, lists the node, shows an env created from the
 * CLI within a second, draws a lab's topology (clickable to the env) and a
 * push's per-node progress (to a second agent on this host, over NBD).
 *
 * Set PROTOCTL_E2E_SKIP_BUILD=1 to reuse an existing dist/.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePorts } from "../fixtures/ports.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "dist/cli/main.js");
const CHROMIUM = "/usr/bin/chromium";
const tag = randomBytes(3).toString("hex");
const node = `obs-${tag}`;
const node2 = `obs2-${tag}`;

let work: string;
let stateDir: string;
let agent2Dir: string;
let configHome: string;
let ports: Record<
  "etcd" | "peer" | "controller" | "agent" | "console" | "cm" | "am" | "agent2" | "am2",
  number
>;
let upOut = "";
let browser: Browser | undefined;
let page: Page;
let agent2: ChildProcess | undefined;

async function cli(args: string[], timeoutMs = 120_000) {
  const r = await execa(process.execPath, [CLI, ...args], {
    env: { XDG_CONFIG_HOME: configHome, PROTOCTL_PLAIN: "1", PROTOCTL_CONTEXT: undefined },
    extendEnv: true,
    stdin: "ignore",
    reject: false,
    timeout: timeoutMs,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function ok(args: string[], timeoutMs?: number): Promise<string> {
  const r = await cli(args, timeoutMs);
  if (r.code !== 0) throw new Error(`protoctl ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The value of one sample (metric name and exact labels) in a Prometheus text page; 0 when absent. */
function sample(page: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of page.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^([^{\s]+)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      total += Number(m[3]);
      found = true;
    }
  }
  return found ? total : 0;
}

const scrape = async (url: string) => {
  const r = await fetch(url);
  expect(r.status).toBe(200);
  return r.text();
};

function urlOf(label: string): string {
  const m = new RegExp(`^${label}: (https?://\\S+)`, "m").exec(upOut);
  if (!m) throw new Error(`up printed no ${label} URL:\n${upOut}`);
  return m[1]!;
}

beforeAll(async () => {
  if (process.env.PROTOCTL_E2E_SKIP_BUILD !== "1") {
    await execa("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: ROOT, reject: false });
    await execa(process.execPath, ["cli/build/bundle.mjs"], { cwd: ROOT });
    await execa(process.execPath, ["controller/console/ui/build.mjs"], { cwd: ROOT });
  }
  expect(existsSync(CLI)).toBe(true);
  expect(existsSync(CHROMIUM)).toBe(true);
  work = await mkdtemp(join(tmpdir(), "protoctl-obs-"));
  stateDir = join(work, "state");
  agent2Dir = join(work, "agent2");
  configHome = join(work, "config");
  const p = await freePorts(9);
  ports = {
    etcd: p[0]!,
    peer: p[1]!,
    controller: p[2]!,
    agent: p[3]!,
    console: p[4]!,
    cm: p[5]!,
    am: p[6]!,
    agent2: p[7]!,
    am2: p[8]!,
  };
  // all nine held open together, so the kernel cannot hand one out twice
  expect(new Set(Object.values(ports)).size).toBe(9);
  const up = await cli(
    [
      "up",
      ...["--state-dir", stateDir, "--node-name", node, "--pool-size", "1G"],
      ...["--etcd-port", String(ports.etcd), "--etcd-peer-port", String(ports.peer)],
      ...["--controller-port", String(ports.controller), "--agent-port", String(ports.agent)],
      ...["--console-port", String(ports.console), "--controller-metrics-port", String(ports.cm)],
      ...["--agent-metrics-port", String(ports.am)],
    ],
    180_000,
  );
  upOut = up.stdout;
  if (up.code !== 0) throw new Error(`up failed: ${up.stderr}`);
  await ok(["base", "build", "bb", "--busybox"]);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  // the console's certificate is the cluster CA's, which this browser profile does not trust
  page = await browser.newPage({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (agent2 && agent2.exitCode === null) {
    agent2.kill("SIGTERM");
    await new Promise((r) => agent2!.once("exit", r));
  }
  if (agent2Dir && existsSync(agent2Dir)) await cli(["agent", "teardown", "--state-dir", agent2Dir]);
  if (stateDir && existsSync(stateDir)) await cli(["down", "--state-dir", stateDir], 180_000);
  if (work) await rm(work, { recursive: true, force: true });
}, 240_000);

describe.sequential("metrics and the web console on `protoctl up`", () => {
  it("up prints the console and both metrics URLs, each a full URL on its own line", () => {
    expect(urlOf("console")).toBe(`https://127.0.0.1:${ports.console}/`);
    expect(urlOf("controller metrics")).toBe(`http://127.0.0.1:${ports.cm}/metrics`);
    expect(urlOf("agent metrics")).toBe(`http://127.0.0.1:${ports.am}/metrics`);
  });

  it("the console signs in with `protoctl console`'s link (once) and lists the node", async () => {
    const link = (await ok(["console", "--no-open"])).trim();
    expect(link).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:${ports.console}/#token=pct1\\.`));
    await page.goto(link);
    await page.locator(`#nodes tr[data-node="${node}"]`).waitFor({ timeout: 10_000 });
    expect(await page.locator(`#nodes tr[data-node="${node}"] .phase`).textContent()).toBe("ready");
    expect(await page.locator("#conn").textContent()).toBe("live");
    expect(page.url()).not.toContain("token="); // the fragment is dropped once used
    // the same link a second time is refused
    const other = await browser!.newPage({ ignoreHTTPSErrors: true });
    await other.goto(link);
    await other.locator("#signin").waitFor({ state: "visible", timeout: 10_000 });
    expect(await other.locator("#signin").textContent()).toMatch(/token already used/);
    await other.close();
  });

  it("an env created from the CLI shows within a second, and the metrics count it", async () => {
    const [cm0, am0] = await Promise.all([
      scrape(urlOf("controller metrics")),
      scrape(urlOf("agent metrics")),
    ]);
    const creates = (p: string) =>
      sample(p, "protoctl_controller_env_operation_seconds_count", { operation: "create", outcome: "ok" });
    const agentCreates = (p: string) =>
      sample(p, "protoctl_agent_env_operation_seconds_count", { node, operation: "create", outcome: "ok" });

    await ok(["env", "create", "web", "--base", "bb"]);
    const t0 = Date.now();
    await page.locator('#envs tr[data-env="web"]').waitFor({ timeout: 5000 });
    const shownMs = Date.now() - t0;
    console.log(`env row shown ${shownMs} ms after env create returned`);
    expect(shownMs).toBeLessThan(1000);
    await expect.poll(() => page.locator('#envs tr[data-env="web"] .phase').textContent()).toBe("running");
    expect(await page.locator('#envs tr[data-env="web"]').textContent()).toContain("bb@1");

    const [cm1, am1] = await Promise.all([
      scrape(urlOf("controller metrics")),
      scrape(urlOf("agent metrics")),
    ]);
    expect(creates(cm1)).toBe(creates(cm0) + 1);
    expect(agentCreates(am1)).toBe(agentCreates(am0) + 1);
    const placed = { result: "placed", node };
    expect(sample(cm1, "protoctl_scheduler_placements_total", placed)).toBe(
      sample(cm0, "protoctl_scheduler_placements_total", placed) + 1,
    );
    expect(sample(cm1, "protoctl_scheduler_placement_seconds_count")).toBeGreaterThan(
      sample(cm0, "protoctl_scheduler_placement_seconds_count"),
    );
    expect(sample(cm1, "protoctl_envs", { phase: "running", node })).toBe(
      sample(cm0, "protoctl_envs", { phase: "running", node }) + 1,
    );
    expect(
      sample(cm1, "protoctl_controller_grpc_server_handled_total", { method: "CreateEnv", code: "OK" }),
    ).toBe(
      sample(cm0, "protoctl_controller_grpc_server_handled_total", { method: "CreateEnv", code: "OK" }) + 1,
    );
    expect(sample(cm1, "protoctl_etcd_request_seconds_count", { operation: "txn" })).toBeGreaterThan(
      sample(cm0, "protoctl_etcd_request_seconds_count", { operation: "txn" }),
    );
    expect(sample(cm1, "protoctl_leader", { replica: "local" })).toBe(1);
    expect(sample(cm1, "protoctl_leader_elections_total")).toBe(1);
    expect(sample(cm1, "protoctl_nodes", { state: "ready", cordoned: "false" })).toBe(1);
    expect(sample(am1, "protoctl_agent_envs", { node })).toBe(
      sample(am0, "protoctl_agent_envs", { node }) + 1,
    );
    expect(sample(am1, "protoctl_pool_size_bytes", { node })).toBe(2 ** 30);
    expect(sample(am1, "protoctl_pool_bases", { node })).toBe(1);
    expect(sample(am1, "protoctl_pool_used_bytes", { node })).toBeGreaterThan(0);
  });

  it("describe and logs open in the side panel", async () => {
    await page.locator('#envs tr[data-env="web"]').click();
    await expect.poll(() => page.locator("#panel").getAttribute("data-env")).toBe("web");
    await expect.poll(() => page.locator('#panel-describe dd[data-field="node"]').textContent()).toBe(node);
    await page.locator("#panel-close").click();
  });

  it("draws a lab's topology, and a machine opens its env", async () => {
    const lab = join(work, "lab.yaml");
    writeFileSync(
      lab,
      "name: tl\nnetworks:\n  red: 10.77.51.0/24\n  blue: 10.77.52.0/24\nmachines:\n  a: { base: bb, networks: [red, blue] }\n  b: { base: bb, networks: [red] }\n",
    );
    await ok(["lab", "up", lab]);
    const svg = page.locator('#labs svg[data-lab="tl"]');
    await svg.waitFor({ timeout: 5000 });
    await expect.poll(() => svg.locator("g.network").count()).toBe(2);
    await expect.poll(() => svg.locator("g.machine").count()).toBe(2);
    await expect.poll(() => svg.locator("line").count()).toBe(3); // a: red, blue; b: red
    expect(await svg.locator("g.node-group").getAttribute("data-node")).toBe(node);
    await svg.locator('g.machine[data-machine="a"]').click();
    await expect.poll(() => page.locator("#panel").getAttribute("data-env")).toBe("tl-a");
    await page.locator("#panel-close").click();
    await ok(["lab", "down", "tl"]);
  });

  it("shows a push's per-node progress, and the push moves the metrics", async () => {
    const token = (await ok(["node", "token", "--node", node2, "-o", "json"])).trim();
    const joinToken = (JSON.parse(token) as { token: string }).token;
    agent2 = spawn(
      process.execPath,
      [
        CLI,
        "agent",
        ...[
          "--name",
          node2,
          "--listen",
          `127.0.0.1:${ports.agent2}`,
          "--controller",
          `127.0.0.1:${ports.controller}`,
        ],
        ...["--join-token", joinToken, "--state-dir", agent2Dir, "--pool-size", "512M"],
        ...["--metrics-listen", `127.0.0.1:${ports.am2}`],
      ],
      { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, PROTOCTL_LOG_LEVEL: "warn" } },
    );
    await page.locator(`#nodes tr[data-node="${node2}"] .phase`).waitFor({ timeout: 30_000 });
    await expect
      .poll(() => page.locator(`#nodes tr[data-node="${node2}"] .phase`).textContent(), { timeout: 30_000 })
      .toBe("ready");
    const am2 = `http://127.0.0.1:${ports.am2}/metrics`;
    const before = await scrape(am2);
    await ok(["base", "push", "bb", "--to", node2], 180_000);
    const row = page.locator(`#pushes [data-push="bb@1"] tr[data-node="${node2}"]`);
    await row.waitFor({ timeout: 5000 });
    await expect.poll(() => row.locator(".phase").textContent(), { timeout: 20_000 }).toBe("local");
    expect(await row.locator(".pct").textContent()).toBe("100%");
    expect(await row.textContent()).toContain(node); // the source
    await expect.poll(() => page.locator(`#nodes tr[data-node="${node2}"]`).textContent()).toContain("bb@1");

    const after = await scrape(am2);
    expect(
      sample(after, "protoctl_agent_push_seconds_count", { node: node2, outcome: "ok" }),
    ).toBeGreaterThan(sample(before, "protoctl_agent_push_seconds_count", { node: node2, outcome: "ok" }));
    expect(sample(after, "protoctl_nbd_attachments", { node: node2, phase: "local" })).toBe(1);
    expect(sample(after, "protoctl_agent_hydration_bytes_total", { node: node2 })).toBeGreaterThan(0);
    const cm = await scrape(urlOf("controller metrics"));
    expect(sample(cm, "protoctl_push_hydrated_ratio", { base: "bb", version: "1", node: node2 })).toBe(1);
  });
});
