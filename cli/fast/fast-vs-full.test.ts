/**
 * The fast entry against the full CLI on the same servers (mTLS with a real
 * CA, as `protoctl up` sets it up): same stdout, stderr and exit status for
 * version and env exec, on success and on each failure (unreachable
 * controller, unknown env, a server whose certificate is not a controller's,
 * a client certificate the server refuses), and env create / env rm (the
 * same request bytes reach the server).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_DETAIL_KEY } from "../../common/errors.js";
import { createCa, issue, serverCredentials } from "../../common/tls.js";
import { Env, EnvPhase, ErrorDetail } from "../../proto/gen/protoctl/v1/types.js";
import { freePort } from "../../test/fixtures/ports.js";
import { type CliResult, runCli, type Stub, startStub } from "../../test/support/cli/stub-server.js";
import { toYaml } from "../config/contexts.js";
import { fastPlan } from "./argv.js";
import { runFast } from "./run-fast.js";

interface ExecCall {
  on(
    ev: "data",
    f: (m: { input?: { $case: string; start?: { env: string; command: string[] } } }) => void,
  ): void;
  write(m: unknown): void;
  end(): void;
  emit(ev: "error", e: unknown): void;
}

type Unary = (call: { request: unknown }, cb: (e: unknown, r?: unknown) => void) => void;

/** The requests createEnv and deleteEnv got, as the generated code decodes them. */
const requests: unknown[] = [];

function failure(code: status, details: string, reason: string, hint: string) {
  const md = new Metadata();
  md.set(
    ERROR_DETAIL_KEY,
    Buffer.from(ErrorDetail.encode(ErrorDetail.fromPartial({ reason, hint })).finish()),
  );
  return { code, details, metadata: md };
}

const createEnv: Unary = (call, cb) => {
  const req = call.request as { spec: { name: string; base: { name: string; version: number } } };
  requests.push(req);
  if (req.spec.name === "taken") {
    cb(failure(status.ALREADY_EXISTS, "env taken already exists", "NAME_IN_USE", "pick another name"));
    return;
  }
  const phase = req.spec.base.name === "slow" ? EnvPhase.ENV_PHASE_PENDING : EnvPhase.ENV_PHASE_RUNNING;
  const node = phase === EnvPhase.ENV_PHASE_PENDING ? "" : "n1";
  cb(
    null,
    Env.fromPartial({ spec: req.spec, status: { phase, node, baseVersion: req.spec.base.version || 5 } }),
  );
};

const deleteEnv: Unary = (call, cb) => {
  const req = call.request as { name: string };
  requests.push(req);
  if (req.name !== "demo")
    cb(failure(status.NOT_FOUND, `env ${req.name} not found`, "ENV_NOT_FOUND", "see `protoctl env ls`"));
  else cb(null, {});
};

const impl = {
  createEnv,
  deleteEnv,
  getVersion: (_c: unknown, cb: (e: null, r: unknown) => void) =>
    cb(null, { version: "9.8.7", controller: "c1", leader: "", cluster: "k", consoleUrl: "" }),
  execEnv: (call: ExecCall) => {
    call.on("data", (m) => {
      if (m.input?.$case !== "start") return;
      const { env, command } = m.input.start!;
      if (env !== "demo") {
        const md = new Metadata();
        const detail = ErrorDetail.fromPartial({ reason: "ENV_NOT_FOUND", hint: "see `protoctl env ls`" });
        md.set(ERROR_DETAIL_KEY, Buffer.from(ErrorDetail.encode(detail).finish()));
        call.emit("error", { code: status.NOT_FOUND, details: `env ${env} not found`, metadata: md });
        return;
      }
      if (command[0] === "no-status") {
        call.end();
        return;
      }
      call.write({ output: { $case: "stdout", stdout: Buffer.from(`ran ${command.join(" ")}\n`) } });
      call.write({ output: { $case: "stderr", stderr: Buffer.from("to stderr\n") } });
      call.write({ output: { $case: "exitCode", exitCode: 7 } });
      call.end();
    });
  },
};

let dir: string;
let good: Stub;
let nodeCert: Stub;
let insecure: Stub;
let ctxs: Record<string, string>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-fast-test-"));
  const ca = await createCa();
  const otherCa = await createCa("other-ca");
  const server = (role: "controller" | "node") =>
    issue(ca, { cn: "protoctl-controller", role, sans: ["protoctl-controller", "127.0.0.1"] });
  const ctl = await server("controller");
  const node = await server("node");
  const admin = await issue(ca, { cn: "admin", role: "admin" });
  const stranger = await issue(otherCa, { cn: "admin", role: "admin" });
  const creds = (c: { certPem: string; keyPem: string }) =>
    serverCredentials({ caPem: ca.certPem, ...c }, { clientAuth: "require" });
  good = await startStub(impl, creds(ctl));
  nodeCert = await startStub(impl, creds(node));
  insecure = await startStub(impl);
  const mtls = (controller: string, client = admin) => ({
    controller,
    caData: ca.certPem,
    certData: client.certPem,
    keyData: client.keyPem,
    serverName: "protoctl-controller",
  });
  const config = toYaml({
    currentContext: "good",
    contexts: {
      good: mtls(good.address),
      "node-cert": mtls(nodeCert.address),
      stranger: mtls(good.address, stranger),
      down: mtls(`127.0.0.1:${await freePort()}`),
      plain: { controller: insecure.address, insecure: true },
    },
  });
  await writeFile(join(dir, "config.yaml"), config, { mode: 0o600 });
  ctxs = { PROTOCTL_CONFIG: join(dir, "config.yaml") };
}, 60_000);

afterAll(async () => {
  await Promise.all([good?.stop(), nodeCert?.stop(), insecure?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

/** runFast with the environment and output capture runCli gives the full CLI. */
async function fast(args: string[], env: Record<string, string>): Promise<CliResult> {
  const plan = fastPlan(args, {});
  expect(plan, "a fast-path shape").toBeDefined();
  const fullEnv = { ...process.env, PROTOCTL_CONTEXT: undefined, PROTOCTL_CONTROLLER: undefined, ...env };
  let stdout = "";
  let stderr = "";
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  const capture = (add: (s: string) => void) =>
    ((chunk: string | Uint8Array) => {
      add(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString());
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = capture((s) => {
    stdout += s;
  });
  process.stderr.write = capture((s) => {
    stderr += s;
  });
  try {
    const code = await runFast(plan!, "0.1.0", fullEnv);
    expect(code, "served by the fast path").toBeDefined();
    return { code: code!, stdout, stderr };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

async function both(args: string[], context: string): Promise<CliResult> {
  const env = { ...ctxs, PROTOCTL_CONTEXT: context };
  const f = await fast(args, env);
  const full = await runCli(args, env);
  expect(f).toEqual(full);
  return f;
}

describe("the fast path and the full CLI agree", () => {
  it("version, text and JSON, over mTLS and plaintext", async () => {
    const text = await both(["version"], "good");
    expect(text).toEqual({
      code: 0,
      stdout: "client: 0.1.0\nserver: 9.8.7 (controller c1, leader -)\n",
      stderr: "",
    });
    expect(JSON.parse((await both(["version", "-o", "json"], "good")).stdout)).toEqual({
      client: "0.1.0",
      server: "9.8.7",
      controller: "c1",
      leader: "",
      cluster: "k",
    });
    expect((await both(["version"], "plain")).code).toBe(0);
  });

  it("env exec: output kept apart, the command's exit status", async () => {
    const r = await both(["env", "exec", "demo", "--", "sh", "-c", "x y"], "good");
    expect(r).toEqual({ code: 7, stdout: "ran sh -c x y\n", stderr: "to stderr\n" });
  });

  it("env create and env rm: the same request, output and exit status", async () => {
    requests.length = 0;
    expect(await both(["env", "create", "e1", "--base", "busybox"], "good")).toEqual({
      code: 0,
      stdout: "env/e1 created from busybox@5 on node n1 (Running)\n",
      stderr: "",
    });
    expect(requests[0]).toEqual(requests[1]);
    expect((await both(["env", "create", "e2", "--base=deb@3"], "plain")).stdout).toBe(
      "env/e2 created from deb@3 on node n1 (Running)\n",
    );
    expect((await both(["env", "create", "e3", "--base", "slow"], "good")).stdout).toBe(
      "env/e3 created from slow@5 (Pending)\n",
    );
    const taken = await both(["env", "create", "taken", "--base", "busybox"], "good");
    expect(taken).toEqual({
      code: 4,
      stdout: "",
      stderr: "error: env taken already exists\nhint: pick another name\n",
    });
    expect(await both(["env", "rm", "demo"], "good")).toEqual({
      code: 0,
      stdout: "env/demo deleted\n",
      stderr: "",
    });
    const gone = await both(["env", "delete", "nope"], "good");
    expect(gone).toEqual({
      code: 3,
      stdout: "",
      stderr: "error: env nope not found\nhint: see `protoctl env ls`\n",
    });
    expect(requests.length).toBe(12);
    for (let i = 0; i < requests.length; i += 2) expect(requests[i], `request ${i}`).toEqual(requests[i + 1]);
  });

  it("unreachable controller: exit 6 with the standard sentence", async () => {
    for (const args of [
      ["version"],
      ["env", "exec", "demo", "--", "true"],
      ["env", "create", "e1", "--base", "b"],
      ["env", "rm", "e1"],
    ]) {
      const r = await both(args, "down");
      expect(r.code).toBe(6);
      expect(r.stderr).toMatch(/cannot reach the controller at 127\.0\.0\.1:\d+; is it running\?\nhint: /);
    }
  });

  it("unknown env: exit 3 with the controller's reason and hint", async () => {
    const r = await both(["env", "exec", "nope", "--", "true"], "good");
    expect(r).toEqual({
      code: 3,
      stdout: "",
      stderr: "error: env nope not found\nhint: see `protoctl env ls`\n",
    });
  });

  it("a stream that ends without an exit status", async () => {
    const r = await both(["env", "exec", "demo", "--", "no-status"], "good");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/without an exit status/);
  });

  it("bad certificates: a node's certificate as server, a client certificate from another CA", async () => {
    for (const ctx of ["node-cert", "stranger"]) {
      for (const args of [["version"], ["env", "exec", "demo", "--", "true"]]) {
        const r = await both(args, ctx);
        expect(r.code, `${ctx} ${args[0]}`).not.toBe(0);
        expect(r.stdout).not.toMatch(/server:|ran /);
        expect(r.stderr).toMatch(/^error: cannot reach the controller/);
      }
    }
    // the role check refused the node's certificate during the handshake: no call reached it
    expect(nodeCert.calls).toEqual([]);
  });

  it("falls back (undefined) when the context is not usable as is", async () => {
    const plan = fastPlan(["version"], {})!;
    expect(await runFast(plan, "0.1.0", { ...ctxs, PROTOCTL_CONTEXT: "missing" })).toBeUndefined();
    expect(await runFast(plan, "0.1.0", { PROTOCTL_CONFIG: join(dir, "absent.yaml") })).toBeUndefined();
  });
});
