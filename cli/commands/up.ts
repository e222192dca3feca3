/** `protoctl up`, `protoctl down` and the hidden `protoctl supervise` (implementation in cli/up/). */
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { DEFAULT_STATE_DIR } from "../up/state.js";
import { examples, name, parseBytes, parseDuration, say } from "./common.js";

function port(flag: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      throw invalidArgument(`invalid ${flag} ${JSON.stringify(raw)}`, {
        reason: "INVALID_FLAG",
        hint: "a port 1-65535",
      });
    }
    return n;
  };
}

const stateDirDefault = () => process.env.PROTOCTL_STATE_DIR || DEFAULT_STATE_DIR;

function upCommand(): Command {
  const cmd = new Command("up")
    .description("start a one-machine cluster: etcd, a controller and a local agent, supervised and logged")
    .option("--state-dir <dir>", "where state and logs live (env: PROTOCTL_STATE_DIR)", stateDirDefault())
    .option("--pool-size <size>", "tmpfs pool size (default: min(25% of available memory, 8G))")
    .option("--node-name <name>", "the local node's name (default: from the host name)")
    .option("--etcd-port <port>", "etcd client port on 127.0.0.1", "2379")
    .option("--etcd-peer-port <port>", "etcd peer port on 127.0.0.1", "2380")
    .option("--controller-port <port>", "controller port on 127.0.0.1", "7443")
    .option("--agent-port <port>", "agent port on 127.0.0.1", "7444")
    .option("--console-port <port>", "web console (HTTPS) port on 127.0.0.1", "7445")
    .option("--controller-metrics-port <port>", "controller Prometheus metrics port on 127.0.0.1", "7446")
    .option("--agent-metrics-port <port>", "agent Prometheus metrics port on 127.0.0.1", "7447")
    .option("--context-name <name>", "name of the CLI context to write and select", "local")
    .option("--insecure", "plaintext gRPC on loopback, no TLS (development)")
    .option("--timeout <duration>", "how long to wait for the node to be Ready", "120s")
    .action(
      async (o: {
        stateDir: string;
        poolSize?: string;
        nodeName?: string;
        etcdPort: string;
        etcdPeerPort: string;
        controllerPort: string;
        agentPort: string;
        consolePort: string;
        controllerMetricsPort: string;
        agentMetricsPort: string;
        contextName: string;
        insecure?: boolean;
        timeout: string;
      }) => {
        if (o.nodeName) name("node", o.nodeName);
        name("context", o.contextName);
        const { resolve } = await import("node:path");
        const { up } = await import("../up/up.js");
        await up({
          stateDir: resolve(o.stateDir),
          poolSize: o.poolSize ? parseBytes(o.poolSize, "--pool-size") : undefined,
          nodeName: o.nodeName,
          etcdPort: port("--etcd-port")(o.etcdPort),
          etcdPeerPort: port("--etcd-peer-port")(o.etcdPeerPort),
          controllerPort: port("--controller-port")(o.controllerPort),
          agentPort: port("--agent-port")(o.agentPort),
          consolePort: port("--console-port")(o.consolePort),
          controllerMetricsPort: port("--controller-metrics-port")(o.controllerMetricsPort),
          agentMetricsPort: port("--agent-metrics-port")(o.agentMetricsPort),
          contextName: o.contextName,
          insecure: !!o.insecure,
          timeoutMs: parseDuration(o.timeout) * 1000,
          cliPath: fileURLToPath(new URL("../main.js", import.meta.url)),
          say,
        });
      },
    );
  return examples(
    cmd,
    "protoctl up",
    "protoctl up --pool-size 2G --node-name dev",
    "protoctl up --state-dir /tmp/pc --etcd-port 12379 --etcd-peer-port 12380 --controller-port 17443 --agent-port 17444",
  );
}

function downCommand(): Command {
  const cmd = new Command("down")
    .description("stop the one-machine cluster and remove its pool, mounts, loop devices and state")
    .option("--state-dir <dir>", "the state dir given to `up` (env: PROTOCTL_STATE_DIR)", stateDirDefault())
    .option("--keep", "keep the state dir (etcd data, logs, pool files) for the next `up`")
    .addHelpText("after", "\nWhen nothing runs, `down` says so and exits 0.\n")
    .action(async (o: { stateDir: string; keep?: boolean }) => {
      const { resolve } = await import("node:path");
      const { down } = await import("../up/down.js");
      await down({ stateDir: resolve(o.stateDir), keep: !!o.keep, say });
    });
  return examples(cmd, "protoctl down", "protoctl down --keep");
}

function superviseCommand(): Command {
  return new Command("supervise")
    .description("run and restart the processes of `protoctl up` (started by `up`)")
    .requiredOption("--state-dir <dir>", "the cluster's state dir")
    .action(async (o: { stateDir: string }) => {
      const { runSupervisor } = await import("../up/supervisor.js");
      await runSupervisor(o.stateDir);
    });
}

export function command(n: string): Command {
  if (n === "down") return downCommand();
  if (n === "supervise") return superviseCommand();
  return upCommand();
}
