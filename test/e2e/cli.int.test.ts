/**
 * The CLI as a user drives it: the built `protoctl` (dist/cli/main.js) run as
 * subprocesses against a real one-machine cluster from `protoctl up` (etcd,
 * controller, agent with a tmpfs pool, systemd-nspawn envs). Its own state dir
 * under /tmp, free loopback ports and its own config dir, so it never touches
 * a developer's `protoctl up`. The TTY path runs through tmux.
 *
 * Set PROTOCTL_E2E_SKIP_BUILD=1 to reuse an existing dist/.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ExitCode } from "../../cli/exit-codes.js";
import { loopsUnder } from "../../common/state-cleanup.js";
import { Env } from "../../proto/gen/protoctl/v1/types.js";
import { freeUpPorts, type UpPorts, upPortArgs } from "../fixtures/ports.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "dist/cli/main.js");

let work: string;
let stateDir: string;
let configHome: string;
let rootfs: string;
let ports: UpPorts;
const node = `e2e-${randomBytes(3).toString("hex")}`;
const tmuxSocket = `protoctl-e2e-${randomBytes(3).toString("hex")}`;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<Result> {
  const r = await execa(process.execPath, [CLI, ...args], {
    env: {
      XDG_CONFIG_HOME: configHome,
      PROTOCTL_PLAIN: "1",
      PROTOCTL_CONTEXT: undefined,
      PROTOCTL_CONTROLLER: undefined,
      ...opts.env,
    },
    extendEnv: true,
    input: opts.input,
    stdin: opts.input === undefined ? "ignore" : "pipe",
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs ?? 120_000,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const upArgs = () => [
  "up",
  "--state-dir",
  stateDir,
  // every port, the console's and the metrics' too: their defaults may be taken by another `protoctl up`
  ...upPortArgs(ports),
  "--node-name",
  node,
  "--pool-size",
  "1G",
];

function leftovers(): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp?.startsWith(stateDir)) out.push(`mount ${mp}`);
  }
  return out;
}

async function loopsUnderState(): Promise<string[]> {
  return loopsUnder(stateDir, String((await execa("losetup", ["-J", "-l"], { reject: false })).stdout));
}

// ---- tmux (a real pseudo-terminal) ----
const tmux = (...args: string[]) => execa("tmux", ["-L", tmuxSocket, ...args], { reject: false });
const pane = async () => String((await tmux("capture-pane", "-p", "-t", "t")).stdout);
async function waitPane(re: RegExp, ms = 15_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await pane();
    if (re.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`pane never matched ${re}:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  if (process.env.PROTOCTL_E2E_SKIP_BUILD !== "1") {
    // tsc emits even when other work in progress has type errors; the bundle step is the CLI's own.
    await execa("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: ROOT, reject: false });
    await execa(process.execPath, ["cli/build/bundle.mjs"], { cwd: ROOT });
  }
  expect(existsSync(CLI)).toBe(true);
  work = await mkdtemp(join(tmpdir(), "protoctl-e2e-"));
  stateDir = join(work, "state");
  configHome = join(work, "config");
  rootfs = await makeBusyboxRootfs(join(work, "rootfs"));
  ports = await freeUpPorts();
}, 300_000);

afterAll(async () => {
  await tmux("kill-server");
  // Whatever happened above, leave nothing running.
  if (stateDir && existsSync(stateDir)) await cli(["down", "--state-dir", stateDir]);
  if (work) await rm(work, { recursive: true, force: true });
}, 180_000);

/**
 * Why `up` failed, with the tails of its logs: every later test that needs the
 * cluster fails with this text rather than with "cannot reach the controller".
 */
let upFailure: string | undefined;
const UP_TEST = "up starts etcd, controller and agent and waits until the node is Ready";
const WITHOUT_CLUSTER = new Set([
  UP_TEST,
  "down on a stopped cluster says so and exits 0",
  "commands against the stopped cluster say the controller is unreachable (exit 6)",
]);

function logTails(): string {
  const dir = join(stateDir, "logs");
  if (!existsSync(dir)) return "(no logs)";
  return readdirSync(dir)
    .map((f) => `--- ${f}\n${readFileSync(join(dir, f), "utf8").trimEnd().split("\n").slice(-15).join("\n")}`)
    .join("\n");
}

beforeEach(({ task }) => {
  if (upFailure && !WITHOUT_CLUSTER.has(task.name)) throw new Error(`protoctl up failed: ${upFailure}`);
});

describe.sequential("protoctl CLI on a real one-machine cluster", () => {
  it(UP_TEST, async () => {
    const r = await cli(upArgs(), { timeoutMs: 180_000 });
    if (r.code !== 0 || r.stderr) upFailure = `exit ${r.code}\n${r.stderr}\n${logTails()}`;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`node ${node} Ready`);
    expect(r.stdout).toContain('context "local" is current');
    const nodes = await cli(["node", "ls", "-o", "json"]);
    expect(nodes.code).toBe(0);
    expect((JSON.parse(nodes.stdout) as Array<{ name: string }>).map((n) => n.name)).toEqual([node]);
  }, 200_000);

  it("a second up is harmless: it reports what runs and changes nothing", async () => {
    const pid = readFileSync(join(stateDir, "run/supervisor.pid"), "utf8");
    const r = await cli(upArgs());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("protoctl is already up");
    expect(r.stdout).toContain("nothing changed");
    expect(readFileSync(join(stateDir, "run/supervisor.pid"), "utf8")).toBe(pid);
  }, 60_000);

  it("base import from a directory", async () => {
    const r = await cli(["base", "import", "busybox", "--dir", rootfs]);
    expect(r.stderr).toContain("Importing base busybox");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^base\/busybox@1 imported/);
  }, 60_000);

  it("base build --busybox (the quick start's base) and a command in an env made from it", async () => {
    const r = await cli(["base", "build", "quick", "--busybox"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^base\/quick@1 built/);
    expect((await cli(["env", "create", "quick-1", "--base", "quick"])).code).toBe(0);
    try {
      const hello = await cli(["env", "exec", "quick-1", "--", "echo", "hello from protoctl"]);
      expect(hello).toEqual({ code: 0, stdout: "hello from protoctl\n", stderr: "" });
    } finally {
      // keep later tests independent of this one's outcome
      expect((await cli(["env", "rm", "quick-1"])).code).toBe(0);
      expect((await cli(["base", "rm", "quick"])).code).toBe(0);
    }
  }, 60_000);

  it("the supervisor restarts a process that dies", async () => {
    const pidFile = join(stateDir, "run/controller.pid");
    const before = Number(readFileSync(pidFile, "utf8"));
    process.kill(before, "SIGKILL");
    const deadline = Date.now() + 30_000;
    for (;;) {
      const now = Number(readFileSync(pidFile, "utf8"));
      if (now !== before && (await cli(["node", "ls", "-q"])).code === 0) break;
      if (Date.now() > deadline) throw new Error("the controller was not restarted");
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(readFileSync(join(stateDir, "logs/supervise.log"), "utf8")).toMatch(
      /controller killed by SIGKILL/,
    );
  }, 60_000);

  it("env create", async () => {
    const r = await cli(["env", "create", "e2e-one", "--base", "busybox"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`env/e2e-one created from busybox@1 on node ${node} (Running)\n`);
    // unprivileged by default, and describe says so
    const d = await cli(["env", "describe", "e2e-one", "-o", "json"]);
    expect(d.code).toBe(0);
    const env = JSON.parse(d.stdout) as { spec: { privileged: boolean }; isolation: string };
    expect(env.spec.privileged).toBe(false);
    expect(env.isolation).toMatch(/^user namespace/);
    const map = await cli(["env", "exec", "e2e-one", "--", "cat", "/proc/self/uid_map"]);
    expect(map.stdout.trim().split(/\s+/).join(" ")).not.toBe("0 0 4294967295");
  }, 60_000);

  it("user add writes a credential that context import uses; a viewer lists but cannot create; user rm revokes", async () => {
    const file = join(configHome, "eve.protoctl.json");
    const add = await cli(["user", "add", "eve", "--role", "viewer", "-f", file]);
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect((statSync(file).mode & 0o777).toString(8)).toBe("600");
    expect((await cli(["context", "import", file])).code).toBe(0);
    try {
      const ls = await cli(["--context", "eve", "env", "ls", "-q"]);
      expect(ls.code).toBe(0);
      expect(ls.stdout).toContain("e2e-one");
      const create = await cli(["--context", "eve", "env", "create", "e2e-eve", "--base", "busybox"]);
      expect(create.code).toBe(ExitCode.PERMISSION);
      expect(create.stderr).toContain("user eve (viewer) may not call CreateEnv");
      const users = await cli(["user", "ls", "-o", "json"]);
      expect(JSON.parse(users.stdout).map((u: { name: string; role: string }) => [u.name, u.role])).toEqual([
        ["eve", "viewer"],
      ]);
      expect((await cli(["user", "rm", "eve"])).code).toBe(0);
      const after = await cli(["--context", "eve", "env", "ls"]);
      expect(after.code).toBe(ExitCode.PERMISSION);
    } finally {
      await cli(["context", "rm", "eve"]);
    }
  }, 60_000);

  it("exec: output and exit status, including a failing command and piped stdin", async () => {
    const ok = await cli(["env", "exec", "e2e-one", "--", "echo", "hello from inside"]);
    expect(ok).toEqual({ code: 0, stdout: "hello from inside\n", stderr: "" });
    const bad = await cli([
      "env",
      "exec",
      "e2e-one",
      "--",
      "sh",
      "-c",
      "echo partial; echo broken >&2; exit 42",
    ]);
    expect(bad).toEqual({ code: 42, stdout: "partial\n", stderr: "broken\n" });
    const missing = await cli(["env", "exec", "e2e-one", "--", "/no/such/binary"]);
    expect(missing.code).not.toBe(0);
    const piped = await cli(["env", "exec", "-i", "e2e-one", "--", "wc", "-c"], { input: "12345" });
    expect(piped.code).toBe(0);
    expect(piped.stdout.trim()).toBe("5");
  }, 60_000);

  it("ls in every output format (JSON and YAML parse back)", async () => {
    const table = await cli(["env", "ls"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+STATUS\s+BASE\s+NODE\s+AGE\s+TTL\n/);
    expect(table.stdout).toMatch(new RegExp(`^e2e-one\\s+Running\\s+busybox@1\\s+${node}\\s`, "m"));
    const wide = await cli(["env", "ls", "-o", "wide"]);
    expect(wide.stdout.split("\n")[0]).toContain("NETWORK");
    const json = await cli(["env", "ls", "-o", "json"]);
    const fromJson = (JSON.parse(json.stdout) as unknown[]).map((x) => Env.fromJSON(x));
    expect(fromJson.map((e) => [e.spec?.name, e.status?.node])).toEqual([["e2e-one", node]]);
    const yaml = await cli(["env", "ls", "-o", "yaml"]);
    const fromYaml = (parseYaml(yaml.stdout) as unknown[]).map((x) => Env.fromJSON(x));
    expect(fromYaml).toEqual(fromJson);
    expect((await cli(["env", "ls", "-q"])).stdout).toBe("e2e-one\n");
    const bases = await cli(["base", "ls", "-o", "yaml"]);
    expect((parseYaml(bases.stdout) as Array<{ name: string }>)[0]!.name).toBe("busybox");
    expect((await cli(["node", "ls", "-q"])).stdout).toBe(`${node}\n`);
  }, 60_000);

  it("logs", async () => {
    const r = await cli(["env", "logs", "e2e-one", "--tail", "50"]);
    expect(r.code).toBe(0);
  }, 60_000);

  it("an unknown env and a malformed flag give the documented codes and a hint", async () => {
    const unknown = await cli(["env", "exec", "no-such-env", "--", "true"]);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/^error: .*no-such-env.*\nhint: .+/);
    expect(unknown.stderr).not.toMatch(/\n\s+at /);
    const describe = await cli(["env", "describe", "no-such-env"]);
    expect(describe.code).toBe(3);
    const badSize = await cli(["env", "create", "e2e-two", "--base", "busybox", "--memory", "lots"]);
    expect(badSize.code).toBe(2);
    expect(badSize.stderr).toContain('invalid --memory "lots"');
    expect(badSize.stderr).toContain("hint: write --memory as a size like 512M or 2G");
    const badFlag = await cli(["env", "ls", "--colour"]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("unknown option '--colour'");
    expect(badFlag.stderr).toContain("protoctl env ls --help");
    const badName = await cli(["env", "create", "Not_Valid", "--base", "busybox"]);
    expect(badName.code).toBe(2);
    // a base the cluster has no record of is refused at once (it used to wait Pending for minutes),
    // through the fast entry and the full CLI alike
    for (const args of [
      ["env", "create", "e2e-typo", "--base", "bussybox"],
      ["env", "create", "e2e-typo", "--base", "bussybox", "--memory", "64M"],
    ]) {
      const typo = await cli(args);
      expect(typo.code).toBe(3);
      expect(typo.stderr).toMatch(/^error: no base named bussybox\nhint: see `protoctl base ls`/);
    }
    const noVersion = await cli(["env", "create", "e2e-typo", "--base", "busybox@99"]);
    expect(noVersion.code).toBe(3);
    expect(noVersion.stderr).toContain("no base named busybox@99");
    expect((await cli(["env", "ls", "-q"])).stdout).toBe("e2e-one\n");
  }, 60_000);

  it("TTY: env shell in tmux has the terminal's size, follows resizes, Ctrl-C reaches the process, exit status returns", async () => {
    const cmd = `XDG_CONFIG_HOME=${configHome} ${process.execPath} ${CLI} env shell e2e-one; echo EXIT=$?; sleep 600`;
    await tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "40", cmd);
    await waitPane(/[#$] ?$/m);
    await tmux("send-keys", "-t", "t", "stty size", "Enter");
    await waitPane(/^40 120$/m);
    await tmux("send-keys", "-t", "t", "sleep 300", "Enter");
    await new Promise((r) => setTimeout(r, 500));
    await tmux("send-keys", "-t", "t", "C-c");
    await tmux("send-keys", "-t", "t", "echo after=$?", "Enter");
    await waitPane(/^after=130$/m);
    await tmux("resize-window", "-t", "t", "-x", "90", "-y", "25");
    await tmux("send-keys", "-t", "t", "clear; stty size", "Enter");
    await waitPane(/^25 90$/m);
    await tmux("send-keys", "-t", "t", "exit 7", "Enter");
    await waitPane(/^EXIT=7$/m);
    await tmux("kill-server");
  }, 60_000);

  it("stop, then rm", async () => {
    const stop = await cli(["env", "stop", "e2e-one"]);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toBe("env/e2e-one stopped\n");
    expect((await cli(["env", "ls"])).stdout).toMatch(/^e2e-one\s+Stopped\s/m);
    const rm1 = await cli(["env", "rm", "e2e-one"]);
    expect(rm1).toMatchObject({ code: 0, stdout: "env/e2e-one deleted\n" });
    expect((await cli(["env", "ls", "-q"])).stdout).toBe("");
    expect((await cli(["env", "rm", "e2e-one"])).code).toBe(3);
  }, 60_000);

  it("down stops everything and leaves nothing: no mounts, loop devices, processes or state", async () => {
    // an env left running on purpose: down must take it away too
    expect((await cli(["env", "create", "e2e-left", "--base", "busybox"])).code).toBe(0);
    const r = await cli(["down", "--state-dir", stateDir], { timeoutMs: 180_000 });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("protoctl is down");
    expect(existsSync(stateDir)).toBe(false);
    expect(leftovers()).toEqual([]);
    expect(await loopsUnderState()).toEqual([]);
    const ps = await execa("ps", ["-eo", "args"]);
    expect(
      String(ps.stdout)
        .split("\n")
        .filter((l) => l.includes(stateDir)),
    ).toEqual([]);
    const ctx = await cli(["context", "ls", "-q"]);
    expect(ctx.stdout).toBe("");
  }, 200_000);

  it("down on a stopped cluster says so and exits 0", async () => {
    const r = await cli(["down", "--state-dir", stateDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("protoctl is not running");
  }, 60_000);

  it("commands against the stopped cluster say the controller is unreachable (exit 6)", async () => {
    // the address the cluster had (the context is gone; never fall back to a developer's real cluster)
    const r = await cli(["env", "ls"], { env: { PROTOCTL_CONTROLLER: `127.0.0.1:${ports.controller}` } });
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("cannot reach the controller");
    expect(r.stderr).toContain("protoctl up");
  }, 60_000);
});
