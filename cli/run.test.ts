/**
 * The CLI end to end in-process, against a ControlService stub: argument
 * checks happen before any RPC, server errors map to the documented exit
 * codes with their hints, listings round-trip, unreachable controllers say so.
 */
import { Metadata, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ERROR_DETAIL_KEY } from "../common/errors.js";
import { Env, EnvPhase, ErrorDetail, Node, NodeState } from "../proto/gen/protoctl/v1/types.js";
import { runCli, type Stub, startStub } from "../test/support/cli/stub-server.js";

const envs = [
  Env.fromPartial({
    spec: { name: "a", base: { name: "busybox", version: 0 } },
    status: { phase: EnvPhase.ENV_PHASE_RUNNING, node: "n1", baseVersion: 1 },
  }),
  Env.fromPartial({
    spec: { name: "b", base: { name: "busybox", version: 1 } },
    status: { phase: EnvPhase.ENV_PHASE_STOPPED, node: "n1", baseVersion: 1 },
  }),
];

function grpcError(code: number, details: string, detail: Partial<ErrorDetail>) {
  const md = new Metadata();
  md.set(ERROR_DETAIL_KEY, Buffer.from(ErrorDetail.encode(ErrorDetail.fromPartial(detail)).finish()));
  return Object.assign(new Error(details), { code, details, metadata: md });
}

let stub: Stub;
let created: unknown[] = [];
beforeAll(async () => {
  stub = await startStub({
    listEnvs: (_c: unknown, cb: (e: null, r: unknown) => void) => cb(null, { envs }),
    listNodes: (_c: unknown, cb: (e: null, r: unknown) => void) =>
      cb(null, { nodes: [Node.fromPartial({ name: "n1", state: NodeState.NODE_STATE_READY })] }),
    getEnv: (call: { request: { name: string } }, cb: (e: unknown, r?: unknown) => void) =>
      cb(
        grpcError(status.NOT_FOUND, `no env named "${call.request.name}"`, {
          reason: "ENV_NOT_FOUND",
          hint: "see `protoctl env ls`",
        }),
      ),
    createEnv: (call: { request: unknown }, cb: (e: unknown, r?: unknown) => void) => {
      created.push(call.request);
      const req = call.request as { spec: { name: string } };
      if (req.spec.name === "taken") {
        cb(
          grpcError(status.ALREADY_EXISTS, 'env "taken" already exists', {
            reason: "NAME_IN_USE",
            hint: "pick another name",
          }),
        );
        return;
      }
      cb(
        null,
        Env.fromPartial({
          spec: req.spec as never,
          status: { phase: EnvPhase.ENV_PHASE_RUNNING, node: "n1", baseVersion: 3 },
        }),
      );
    },
    deleteBase: (_c: unknown, cb: (e: unknown) => void) =>
      cb(
        grpcError(status.FAILED_PRECONDITION, "base busybox@1 is in use by env a", {
          reason: "BASE_IN_USE",
          hint: "delete env a first",
        }),
      ),
  });
});
afterAll(async () => {
  await stub.stop();
});

const at = () => ({ PROTOCTL_CONTROLLER: stub.address });

describe("argument checks (exit 2, nothing sent)", () => {
  it.each([
    [["env", "create", "Bad_Name", "--base", "busybox"], /invalid env name "Bad_Name"/],
    [["env", "create", "ok", "--base", "BusyBox"], /invalid base name/],
    [["env", "create", "ok", "--base", "busybox@x"], /invalid version/],
    [["env", "create", "ok", "--base", "busybox", "--memory", "lots"], /invalid --memory/],
    [["env", "create", "ok", "--base", "busybox", "--network", "wifi"], /invalid --network/],
    [["env", "create", "ok", "--base", "busybox", "--port", "99999:80"], /invalid --port/],
    [["env", "create", "ok", "--base", "busybox", "--env", "NOEQUALS"], /invalid --env/],
    [["env", "describe", "../etc"], /invalid env name/],
    [["env", "ls", "-o", "xml"], /Allowed choices are table, wide, json, yaml/],
    [["env", "describe", "x", "-o", "wide"], /Allowed choices are yaml, json/],
    [["env", "create", "ok"], /required option '--base/],
    [["env", "ls", "--bogus"], /unknown option '--bogus'/],
    [["env", "frobnicate"], /unknown command 'frobnicate'/],
    [["base", "import", "x"], /needs --dir, --tar or --oci-archive/],
    [["base", "import", "x", "--dir", "/a", "--tar", "/b"], /cannot be used with/],
    [["node", "token", "--ttl", "soon"], /invalid duration/],
    [["env", "roll", "x", "--base-version", "latest"], /invalid --base-version/],
    [["events", "--since", "yesterday"], /invalid --since "yesterday"/],
    [["events", "-o", "xml"], /Allowed choices are text, json/],
  ])("%j", async (args, message) => {
    const before = stub.calls.length;
    const r = await runCli(args, at());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(stub.calls.length).toBe(before);
  });

  it("invalid names carry the naming rule as a hint", async () => {
    const r = await runCli(["env", "rm", "UPPER"], at());
    expect(r.stderr).toContain("hint: names are 1-63 characters");
  });
});

describe("server errors map to exit codes with hints", () => {
  it("not found → 3", async () => {
    const r = await runCli(["env", "describe", "ghost"], at());
    expect(r).toMatchObject({ code: 3, stdout: "" });
    expect(r.stderr).toBe('error: no env named "ghost"\nhint: see `protoctl env ls`\n');
  });
  it("already exists → 4", async () => {
    const r = await runCli(["env", "create", "taken", "--base", "busybox"], at());
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("hint: pick another name");
  });
  it("precondition → 5", async () => {
    const r = await runCli(["base", "rm", "busybox@1"], at());
    expect(r.code).toBe(5);
    expect(r.stderr).toContain("delete env a first");
  });
  it("unimplemented → 1", async () => {
    const r = await runCli(["lab", "ls"], at());
    expect(r.code).toBe(1);
  });
  it("unreachable controller → 6 with the address and `protoctl up`", async () => {
    const r = await runCli(["env", "ls"], { PROTOCTL_CONTROLLER: "127.0.0.1:1" });
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("cannot reach the controller at 127.0.0.1:1; is it running?");
    expect(r.stderr).toContain("protoctl up");
  });
  it("unknown context → 3 before any RPC", async () => {
    const r = await runCli(["--context", "nope", "env", "ls"], at());
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no context named "nope"');
  });
});

describe("listings", () => {
  it("table, wide, -q", async () => {
    const t = await runCli(["env", "ls"], at());
    expect(t.code).toBe(0);
    expect(t.stdout.split("\n")[0]).toMatch(/^NAME\s+STATUS\s+BASE\s+NODE\s+AGE\s+TTL$/);
    expect(t.stdout).toMatch(/^a\s+Running\s+busybox@1\s+n1/m);
    const w = await runCli(["env", "ls", "-o", "wide"], at());
    expect(w.stdout.split("\n")[0]).toContain("LAYERS");
    const q = await runCli(["env", "ls", "-q"], at());
    expect(q.stdout).toBe("a\nb\n");
  });
  it("json and yaml parse back to the same envs", async () => {
    const j = await runCli(["env", "ls", "-o", "json"], at());
    expect((JSON.parse(j.stdout) as unknown[]).map((x) => Env.fromJSON(x))).toEqual(envs);
    const y = await runCli(["env", "list", "--output", "yaml"], at());
    expect((parseYaml(y.stdout) as unknown[]).map((x) => Env.fromJSON(x))).toEqual(envs);
  });
  it("node ls", async () => {
    const r = await runCli(["node", "ls"], at());
    expect(r.stdout).toMatch(/^n1\s+Ready/m);
  });
});

describe("env create builds the spec from flags", () => {
  it("sends every flag", async () => {
    created = [];
    const r = await runCli(
      [
        "env",
        "create",
        "web",
        "--base",
        "debian@3",
        "--layer",
        "tools",
        "--layer",
        "web",
        "--memory",
        "512M",
        "--cpus",
        "1.5",
        "--pids",
        "100",
        "--network",
        "bridge:lan0",
        "--port",
        "8080:80",
        "--port",
        "53:53/udp",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--node",
        "n1",
        "--boot",
      ],
      at(),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("env/web created from debian@3 on node n1 (Running)\n");
    const spec = created[0] as { spec: Record<string, unknown>; wait: boolean };
    expect(spec.wait).toBe(true);
    expect(spec.spec).toMatchObject({
      name: "web",
      base: { name: "debian", version: 3 },
      layers: ["tools", "web"],
      boot: true,
      node: "n1",
      start: true,
      env: { A: "1", B: "x=y" },
      resources: { memoryBytes: 512 * 1024 * 1024, cpus: 1.5, pids: 100 },
      network: {
        mode: 4,
        attachments: [{ bridge: "lan0" }],
        ports: [
          { protocol: "tcp", hostPort: 8080, containerPort: 80 },
          { protocol: "udp", hostPort: 53, containerPort: 53 },
        ],
      },
    });
  });
  it("--no-start and --no-wait", async () => {
    created = [];
    await runCli(["env", "create", "x", "--base", "b", "--no-start", "--no-wait"], at());
    expect(created[0]).toMatchObject({ wait: false, spec: { start: false } });
  });
});

describe("help", () => {
  it("root help lists every command and the exit codes", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const c of [
      "up",
      "down",
      "doctor",
      "version",
      "context",
      "node",
      "base",
      "layer",
      "env",
      "lab",
      "events",
      "completion",
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^  ${c}\\s`, "m"));
    }
    expect(r.stdout).toContain("Exit status:");
    expect(r.stdout).not.toMatch(/^\s+supervise\s/m);
  });
  it.each([
    ["env", "create"],
    ["env", "exec"],
    ["env", "shell"],
    ["env", "logs"],
    ["base", "import"],
    ["base", "push"],
    ["layer", "add"],
    ["node", "drain"],
    ["lab", "graph"],
    ["context", "use"],
    ["up"],
    ["down"],
    ["events"],
  ])("%s %s --help has an example", async (...path) => {
    const r = await runCli([...path.filter(Boolean), "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Examples?:\n {2}\$ protoctl /);
  });
  it("a group without a subcommand shows help and exits 2", async () => {
    const r = await runCli(["env"]);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toContain("Usage: protoctl env");
  });
});

describe("every command documents itself", () => {
  it("each user command's --help has an example", async () => {
    const { buildProgram } = await import("./program.js");
    const root = await buildProgram([], "0", true);
    const missing: string[] = [];
    const walk = (cmd: import("commander").Command, path: string[]) => {
      for (const sub of cmd.commands) {
        const p = [...path, sub.name()];
        const hidden = (sub as unknown as { _hidden?: boolean })._hidden;
        if (hidden || ["agent", "controller", "help"].includes(sub.name())) continue;
        if (sub.commands.length) walk(sub, p);
        let text = "";
        sub.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
        sub.outputHelp();
        if (
          !/Examples?:\n\s+\$ .*protoctl /.test(text) &&
          !(sub.name() === "doctor" && /Examples:/.test(text))
        ) {
          missing.push(p.join(" "));
        }
      }
    };
    walk(root, []);
    expect(missing).toEqual([]);
  });
});

describe("options", () => {
  it("no command's option has the name of a root option (the root's would win, even after the command)", async () => {
    const { buildProgram } = await import("./program.js");
    const root = await buildProgram([], "0", true);
    const rootFlags = new Set(root.options.flatMap((o) => [o.long, o.short]).filter(Boolean));
    const clashes: string[] = [];
    const walk = (cmd: import("commander").Command, path: string[]) => {
      for (const sub of cmd.commands) {
        const p = [...path, sub.name()];
        for (const o of sub.options)
          for (const f of [o.long, o.short]) if (f && rootFlags.has(f)) clashes.push(`${p.join(" ")} ${f}`);
        walk(sub, p);
      }
    };
    walk(root, []);
    expect(rootFlags.has("--version")).toBe(true);
    expect(clashes).toEqual([]);
  });
});
