/** `protoctl env ...`: environments (systemd-nspawn machines on snapshots of bases). */
import { Command, Option } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { formatVersionRef } from "../../common/names.js";
import {
  type EnvSpec,
  NetworkMode,
  type NetworkSpec,
  type PortForward,
  RestartPolicy,
} from "../../proto/gen/protoctl/v1/types.js";
import { envList, envPhase } from "../output/columns.js";
import {
  collect,
  describeCommand,
  examples,
  getApi,
  keyValues,
  listFlags,
  name,
  parseBytes,
  parseDuration,
  printList,
  say,
  versionRef,
} from "./common.js";
import { addSandboxCommands } from "./env-sandbox.js";

/** `none|host|private|bridge:NAME` → NetworkSpec (ports added separately). */
export function parseNetwork(raw: string): NetworkSpec {
  const spec: NetworkSpec = {
    mode: NetworkMode.NETWORK_MODE_NONE,
    attachments: [],
    ports: [],
    hosts: {},
    nat: false,
  };
  if (raw === "none") return spec;
  if (raw === "host") return { ...spec, mode: NetworkMode.NETWORK_MODE_HOST };
  if (raw === "private") return { ...spec, mode: NetworkMode.NETWORK_MODE_PRIVATE };
  if (raw.startsWith("bridge:")) {
    const bridge = name("network", raw.slice("bridge:".length));
    // a Linux interface name: the agent would refuse a longer one after the env was recorded
    if (bridge.length > 15) {
      throw invalidArgument(
        `invalid --network ${JSON.stringify(raw)}: a bridge name has at most 15 characters`,
        {
          reason: "INVALID_FLAG",
        },
      );
    }
    return {
      ...spec,
      mode: NetworkMode.NETWORK_MODE_BRIDGE,
      attachments: [
        { mode: NetworkMode.NETWORK_MODE_BRIDGE, bridge, address: "", gateway: "", interfaceName: "" },
      ],
    };
  }
  throw invalidArgument(`invalid --network ${JSON.stringify(raw)}`, {
    reason: "INVALID_FLAG",
    hint: "use none, host, private or bridge:NAME",
  });
}

/** `8080:80`, `8080:80/udp` → PortForward. */
export function parsePort(raw: string): PortForward {
  const m = /^([0-9]{1,5}):([0-9]{1,5})(?:\/(tcp|udp))?$/.exec(raw);
  const ok = (n: number) => n >= 1 && n <= 65535;
  if (!m || !ok(Number(m[1])) || !ok(Number(m[2]))) {
    throw invalidArgument(`invalid --port ${JSON.stringify(raw)}`, {
      reason: "INVALID_FLAG",
      hint: "write HOST:CONTAINER[/tcp|udp] with ports 1-65535, e.g. 8080:80",
    });
  }
  return { protocol: m[3] ?? "tcp", hostPort: Number(m[1]), containerPort: Number(m[2]) };
}

export interface CreateOpts {
  base: string;
  layer: string[];
  node?: string;
  selector: string[];
  boot?: boolean;
  privileged?: boolean;
  memory?: string;
  cpus?: string;
  pids?: string;
  network?: string;
  nat?: boolean;
  port: string[];
  env: string[];
  hostname?: string;
  restart?: string;
  start: boolean;
  wait: boolean;
  ttl?: string;
  disk?: string;
}

/** Builds the EnvSpec from flags; every check happens here, before any RPC. */
export function envSpecFromFlags(n: string, o: CreateOpts): EnvSpec {
  name("env", n);
  const base = versionRef("base", o.base);
  for (const l of o.layer) name("layer", l);
  if (o.node) name("node", o.node);
  const cpus = o.cpus === undefined ? 0 : Number(o.cpus);
  if (!Number.isFinite(cpus) || cpus < 0) {
    throw invalidArgument(`invalid --cpus ${JSON.stringify(o.cpus)}`, {
      reason: "INVALID_FLAG",
      hint: "e.g. --cpus 1 or --cpus 0.5",
    });
  }
  const pids = o.pids === undefined ? 0 : Number(o.pids);
  if (!Number.isInteger(pids) || pids < 0) {
    throw invalidArgument(`invalid --pids ${JSON.stringify(o.pids)}`, {
      reason: "INVALID_FLAG",
      hint: "a positive integer",
    });
  }
  const network = parseNetwork(o.network ?? "none");
  network.ports = o.port.map(parsePort);
  const routed =
    network.mode === NetworkMode.NETWORK_MODE_PRIVATE || network.mode === NetworkMode.NETWORK_MODE_BRIDGE;
  if (network.ports.length > 0 && !routed) {
    throw invalidArgument("--port needs --network private or bridge:NAME", {
      reason: "INVALID_FLAG",
      hint: "a port is forwarded to the env's own address, which host and none networks do not have",
    });
  }
  if (o.nat) {
    if (network.mode !== NetworkMode.NETWORK_MODE_PRIVATE) {
      throw invalidArgument("--nat needs --network private", {
        reason: "INVALID_FLAG",
        hint: "add --network private (a bridge network reaches out through its bridge)",
      });
    }
    network.nat = true;
  }
  return {
    name: n,
    base,
    layers: o.layer,
    boot: !!o.boot,
    privileged: !!o.privileged,
    resources: {
      memoryBytes: o.memory ? parseBytes(o.memory, "--memory") : 0,
      cpus,
      pids,
      diskBytes: o.disk ? parseBytes(o.disk, "--disk") : 0,
    },
    network,
    env: keyValues(o.env, "--env"),
    files: [],
    startup: [],
    node: o.node ?? "",
    nodeSelector: keyValues(o.selector, "--selector"),
    group: "",
    restart:
      o.restart === "always" ? RestartPolicy.RESTART_POLICY_ALWAYS : RestartPolicy.RESTART_POLICY_NEVER,
    start: o.start,
    hostname: o.hostname ?? "",
  };
}

export function command(_name: string): Command {
  const cmd = new Command("env").description(
    "manage environments: systemd-nspawn machines on base snapshots",
  );

  examples(
    cmd
      .command("create")
      .argument("<name>", "env name")
      .description("create an environment from a base version and layers, and start it")
      .requiredOption("--base <base[@N]>", "base, optionally pinned to version N (default: latest)")
      .option("--layer <layer>", "layer on top of the base (repeatable, bottom first)", collect, [])
      .option("--node <node>", "place on this node")
      .option("--selector <k=v>", "place on a node with these labels (repeatable)", collect, [])
      .option("--boot", "boot an init system (systemd-nspawn -b) instead of idling")
      .option("--privileged", "no user namespace: root inside is root on the host (default: unprivileged)")
      .option("--memory <size>", "memory limit, e.g. 512M")
      .option("--cpus <n>", "CPU limit, e.g. 1 or 0.5")
      .option("--pids <n>", "process count limit")
      .option("--disk <size>", "cap what the env may write, e.g. 2G (btrfs simple quotas)")
      .option("--network <mode>", "none | host | private | bridge:NAME", "none")
      .option("--nat", "private network: reach the outside through the node (NAT); off by default")
      .option(
        "--port <host:container>",
        "forward a host port (repeatable, needs a private/bridge network)",
        collect,
        [],
      )
      .option("--env <k=v>", "environment variable for commands run inside (repeatable)", collect, [])
      .option("--hostname <name>", "hostname inside (default: the env name)")
      .option("--ttl <duration>", "delete it this long after creation, e.g. 30m or 2h (see `env extend`)")
      .addOption(
        new Option("--restart <policy>", "recreate elsewhere when its node is lost").choices([
          "never",
          "always",
        ]),
      )
      .option("--no-start", "create the filesystem only; start later with `env start`")
      .option("--no-wait", "return once recorded, do not wait for it to run"),
    "protoctl env create demo --base busybox",
    "protoctl env create web --base debian@3 --layer tools --memory 512M --cpus 1 --network private --port 8080:80",
    "protoctl env create fetcher --base debian --network private --nat",
  ).action(async (n: string, opts: CreateOpts, self: Command) => {
    const spec = envSpecFromFlags(n, opts);
    const api = await getApi(self);
    const ttlMs = opts.ttl === undefined ? undefined : parseDuration(opts.ttl) * 1000;
    const env = await api.unary("createEnv", { spec, wait: opts.wait, ttlMs });
    const where = env.status?.node ? ` on node ${env.status.node}` : "";
    const v = env.status?.baseVersion
      ? formatVersionRef(spec.base!.name, env.status.baseVersion)
      : spec.base!.name;
    say(`env/${n} created from ${v}${where} (${envPhase(env)})`);
  });

  examples(
    listFlags(cmd.command("ls").alias("list").description("list environments")).option(
      "--node <node>",
      "only envs on this node",
    ),
    "protoctl env ls",
    "protoctl env ls -o json | jq '.[].spec.name'",
  ).action(async (opts: { output: string; quiet?: boolean; node?: string }, self: Command) => {
    if (opts.node) name("node", opts.node);
    const api = await getApi(self);
    const res = await api.unary("listEnvs", { node: opts.node ?? "", group: "" }, { deadlineMs: 15_000 });
    await printList(res.envs, envList, opts);
  });

  describeCommand(
    cmd,
    "env",
    "<name>",
    "show an environment in detail",
    "protoctl env describe demo",
    async (api, n) => {
      const { Env } = await import("../../proto/gen/protoctl/v1/types.js");
      const env = await api.unary("getEnv", { name: n }, { deadlineMs: 15_000 });
      const { isolationOf, isolationText } = await import("../../common/privilege.js");
      // explicit even when false (proto JSON leaves defaults out), plus what it means
      const json = Env.toJSON(env) as { spec?: Record<string, unknown> };
      if (json.spec) json.spec.privileged = env.spec?.privileged ?? false;
      const isolation = env.spec ? isolationText(isolationOf(env.spec)) : undefined;
      return { ...json, isolation };
    },
  );

  examples(
    cmd
      .command("start")
      .argument("<name...>")
      .description("start stopped environments")
      .option("--no-wait", "do not wait until running"),
    "protoctl env start demo",
  ).action(async (names: string[], opts: { wait: boolean }, self: Command) => {
    for (const n of names) name("env", n);
    const api = await getApi(self);
    for (const n of names) {
      const env = await api.unary("startEnv", { name: n, wait: opts.wait });
      say(`env/${n} ${envPhase(env).toLowerCase()}`);
    }
  });

  examples(
    cmd
      .command("stop")
      .argument("<name...>")
      .description("stop environments (their filesystem stays)")
      .option("--timeout <seconds>", "grace period before killing", "10")
      .option("--no-wait", "do not wait until stopped"),
    "protoctl env stop demo",
  ).action(async (names: string[], opts: { timeout: string; wait: boolean }, self: Command) => {
    for (const n of names) name("env", n);
    const t = Number(opts.timeout);
    if (!Number.isFinite(t) || t < 0) {
      throw invalidArgument(`invalid --timeout ${JSON.stringify(opts.timeout)}`, {
        reason: "INVALID_FLAG",
        hint: "seconds, e.g. 10",
      });
    }
    const api = await getApi(self);
    for (const n of names) {
      const env = await api.unary("stopEnv", {
        name: n,
        timeoutMs: Math.round(t * 1000),
        wait: opts.wait,
      });
      say(`env/${n} ${envPhase(env).toLowerCase()}`);
    }
  });

  examples(
    cmd
      .command("rm")
      .alias("delete")
      .argument("<name...>")
      .description("delete environments (stopping them first)")
      .option("--no-wait", "do not wait until deleted"),
    "protoctl env rm demo",
  ).action(async (names: string[], opts: { wait: boolean }, self: Command) => {
    for (const n of names) name("env", n);
    const api = await getApi(self);
    for (const n of names) {
      await api.unary("deleteEnv", { name: n, wait: opts.wait });
      say(`env/${n} deleted`);
    }
  });

  examples(
    cmd
      .command("logs")
      .argument("<name>")
      .description("print an environment's console output")
      .option("-f, --follow", "keep printing new output")
      .option("--tail <lines>", "only the last N lines", "0"),
    "protoctl env logs demo",
    "protoctl env logs -f --tail 20 demo",
  ).action(async (n: string, opts: { follow?: boolean; tail: string }, self: Command) => {
    name("env", n);
    const tailLines = Number(opts.tail);
    if (!Number.isInteger(tailLines) || tailLines < 0) {
      throw invalidArgument(`invalid --tail ${JSON.stringify(opts.tail)}`, {
        reason: "INVALID_FLAG",
        hint: "a line count, e.g. 20",
      });
    }
    const api = await getApi(self);
    for await (const line of api.stream((c, o) =>
      c.envLogs({ env: n, follow: !!opts.follow, tailLines }, o),
    )) {
      (line.stream === "stdout" ? process.stdout : process.stderr).write(line.data);
    }
  });

  examples(
    cmd
      .command("snapshot")
      .argument("<name>")
      .description("seal an environment's filesystem as a new version of a base")
      .requiredOption("--as-base <base>", "base to add the version to (created if new)"),
    "protoctl env snapshot demo --as-base demo-golden",
  ).action(async (n: string, opts: { asBase: string }, self: Command) => {
    name("env", n);
    name("base", opts.asBase);
    const api = await getApi(self);
    const v = await api.unary("snapshotEnv", { name: n, asBase: opts.asBase });
    say(`base/${formatVersionRef(v.base, v.version)} created from env/${n}`);
  });

  examples(
    cmd
      .command("move")
      .argument("<name>")
      .description(
        "move an environment to another node: it is stopped, its filesystem is sent there (btrfs send, only its changes when the node holds its base version), and it starts there again if it was meant to run (no live migration)",
      )
      .requiredOption("--to <node>", "target node")
      .option("--live", "live migration (not supported: refused)"),
    "protoctl env move demo --to node-2",
  ).action(async (n: string, opts: { to: string; live?: boolean }, self: Command) => {
    name("env", n);
    name("node", opts.to);
    const api = await getApi(self);
    const env = await api.unary("moveEnv", { name: n, to: opts.to, live: !!opts.live });
    say(`env/${n} moved to ${env.status?.node ?? opts.to} (${envPhase(env)})`);
  });

  examples(
    cmd
      .command("roll")
      .argument("<name>")
      .description("recreate an environment on a newer version of its base")
      // not --version: the root's --version is recognised after subcommands too and would win
      .option("--base-version <n>", "base version (default: latest)", "0")
      .option("--no-wait", "do not wait until running"),
    "protoctl env roll demo",
    "protoctl env roll demo --base-version 3",
  ).action(async (n: string, opts: { baseVersion: string; wait: boolean }, self: Command) => {
    name("env", n);
    const version = Number(opts.baseVersion);
    if (!Number.isInteger(version) || version < 0) {
      throw invalidArgument(`invalid --base-version ${JSON.stringify(opts.baseVersion)}`, {
        reason: "INVALID_FLAG",
        hint: "a version number",
      });
    }
    const api = await getApi(self);
    const env = await api.unary("rollEnv", { name: n, version, wait: opts.wait });
    say(`env/${n} rolled to ${env.spec?.base?.name}@${env.status?.baseVersion ?? "?"} (${envPhase(env)})`);
  });

  examples(
    cmd
      .command("exec")
      .argument("<name>", "env name")
      .argument("<command...>", "command and arguments (after --)")
      .description("run a command in an environment; exits with its status")
      .option("-i, --stdin", "send this terminal's input to the command")
      .option("-t, --tty", "give the command a terminal (raw mode, window size, Ctrl-C inside)")
      .option("-e, --env <k=v>", "environment variable (repeatable)", collect, [])
      .option("-w, --workdir <dir>", "working directory inside")
      .option("-u, --user <user>", "user inside"),
    "protoctl env exec demo -- uname -a",
    "protoctl env exec -it demo -- /bin/sh",
    "echo hello | protoctl env exec -i demo -- cat",
  ).action(
    async (
      n: string,
      command: string[],
      opts: { stdin?: boolean; tty?: boolean; env: string[]; workdir?: string; user?: string },
      self: Command,
    ) => {
      name("env", n);
      const envVars = keyValues(opts.env, "--env");
      const { execInEnv } = await import("./env-exec.js");
      const api = await getApi(self);
      const code = await execInEnv(api, {
        env: n,
        command,
        stdin: !!opts.stdin,
        tty: !!opts.tty,
        envVars,
        workdir: opts.workdir ?? "",
        user: opts.user ?? "",
        login: false,
      });
      process.exitCode = code;
    },
  );

  examples(
    cmd
      .command("shell")
      .argument("<name>", "env name")
      .description("open an interactive login shell in an environment (bash when present, else sh)")
      .option("-u, --user <user>", "user inside"),
    "protoctl env shell demo",
  ).action(async (n: string, opts: { user?: string }, self: Command) => {
    name("env", n);
    const { execInEnv, LOGIN_SHELL } = await import("./env-exec.js");
    const api = await getApi(self);
    const tty = process.stdin.isTTY === true;
    const code = await execInEnv(api, {
      env: n,
      command: LOGIN_SHELL,
      stdin: true,
      tty,
      envVars: {},
      workdir: "",
      user: opts.user ?? "",
      login: true,
    });
    process.exitCode = code;
  });

  addSandboxCommands(cmd);
  return examples(cmd, "protoctl env create demo --base busybox", "protoctl env exec demo -- ls /");
}
