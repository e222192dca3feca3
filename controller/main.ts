/**
 * `protoctl controller`: runs one controller replica until SIGTERM/SIGINT.
 */
import { Command } from "commander";
import { CONTROLLER_NODE_FLAGS, launchedWithControllerFlags } from "../common/controller-launch.js";
import { createLogger, type Logger } from "../common/logger.js";
import { loadControllerConfig } from "./config.js";
import { startController } from "./controller.js";

export { type ControllerConfig, controllerConfig, loadControllerConfig } from "./config.js";
export type { RunningController } from "./controller.js";
export { startController } from "./controller.js";

interface Flags {
  config?: string;
  listen?: string;
  advertise?: string;
  etcd?: string;
  etcdPrefix?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  insecureEtcd?: boolean;
  caStore?: string;
  stateDir?: string;
  id?: string;
  insecure?: boolean;
  leaseTtl?: string;
  logLevel?: string;
  metricsListen?: string;
  metricsTls?: boolean;
  consoleListen?: string;
}

export function controllerCommand(): Command {
  return new Command("controller")
    .description("run a controller replica (serves the API; the elected leader schedules and reconciles)")
    .option("--config <file>", "YAML configuration file (see deploy/controller.yaml)")
    .option("--listen <host:port>", "API address (default 127.0.0.1:7443)")
    .option(
      "--advertise <host:port>",
      "address agents and CLIs use to reach this replica (default: --listen)",
    )
    .option("--etcd <urls>", "etcd endpoints, comma separated (default http://127.0.0.1:2379)")
    .option("--etcd-prefix <prefix>", "key prefix in etcd (default /protoctl/v1/)")
    .option("--etcd-ca <file>", "CA certificate that signed etcd's server certificate (https endpoints)")
    .option("--etcd-cert <file>", "client certificate this controller shows to etcd")
    .option("--etcd-key <file>", "private key of --etcd-cert")
    .option(
      "--insecure-etcd",
      "accept keeping the CA key in an etcd that does not require client certificates (development only)",
    )
    .option(
      "--ca-store <where>",
      "disk (state dir) or etcd (shared by replicas; etcd must require client certs)",
    )
    .option(
      "--state-dir <dir>",
      "state directory: CA (with tls.caStore=disk), admin credential (default /var/lib/protoctl/controller)",
    )
    .option("--id <id>", "replica id (default hostname-pid)")
    .option("--insecure", "serve plaintext without authentication (development only)")
    .option(
      "--lease-ttl <seconds>",
      "node lease TTL: a silent agent's node turns NotReady after this long (default 3)",
    )
    .option("--log-level <level>", "trace|debug|info|warn|error")
    .option(
      "--metrics-listen <host:port>",
      "serve Prometheus metrics here (plain HTTP on loopback unless --metrics-tls)",
    )
    .option("--metrics-tls", "serve metrics over HTTPS; scrapers need a certificate from the cluster CA")
    .option("--console-listen <host:port>", "serve the web console here (HTTPS, cluster certificate)")
    .action(async (flags: Flags) => {
      const config = loadControllerConfig(flags.config, {
        listen: flags.listen,
        advertise: flags.advertise,
        "etcd.endpoints": flags.etcd,
        "etcd.prefix": flags.etcdPrefix,
        "etcd.caFile": flags.etcdCa,
        "etcd.certFile": flags.etcdCert,
        "etcd.keyFile": flags.etcdKey,
        "etcd.insecure": flags.insecureEtcd ? true : undefined,
        "tls.caStore": flags.caStore,
        stateDir: flags.stateDir,
        id: flags.id,
        insecure: flags.insecure ? true : undefined,
        "membership.leaseTtlSeconds": flags.leaseTtl,
        "log.level": flags.logLevel,
        "metrics.listen": flags.metricsListen,
        "metrics.tls": flags.metricsTls ? true : undefined,
        "console.listen": flags.consoleListen,
      });
      const log = createLogger({
        name: "controller",
        level: config.log.level,
        format: config.log.format,
        file: config.log.file || undefined,
      });
      if (!launchedWithControllerFlags()) {
        log.info(
          { flags: CONTROLLER_NODE_FLAGS.join(" ") },
          "node runs without the controller's heap flags: more time in garbage collection (set NODE_OPTIONS)",
        );
      }
      await runUntilSignalled(config, log);
    });
}

async function runUntilSignalled(config: Parameters<typeof startController>[0], log: Logger): Promise<void> {
  const c = await startController(config, log);
  if (c.adminCredentialFile) log.info({ file: c.adminCredentialFile }, "admin credential for the CLI");
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info({ signal: sig }, "stopping");
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  await c.stop();
}
