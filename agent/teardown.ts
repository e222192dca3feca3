/**
 * `protoctl agent teardown`: takes a node out for good on its own host. A
 * stopped agent leaves its machines running, its pool mounted and its loop
 * devices attached on purpose (envs survive restarts); this removes all of it:
 * the machines and NBD helpers naming the state dir, the node's env cgroups,
 * every mount under the dir (sprouts, the pool, its tmpfs), the loop devices
 * backed by files under it, and the dir. The agent itself must be stopped
 * first (or `--force` stops it): tearing down under a live agent would race it.
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Command } from "commander";
import { failedPrecondition, ProtoctlError } from "../common/errors.js";
import { type CleanupReport, cleanupState, processesNaming, terminate } from "../common/state-cleanup.js";
import { loadAgentConfig } from "./config.js";

/** Pids among `pids` that run a protoctl agent (by subcommand or entry script). */
export function agentPids(
  pids: number[],
  cmdline = (p: number) => readFileSync(`/proc/${p}/cmdline`, "utf8"),
): number[] {
  return pids.filter((p) => {
    try {
      const argv = cmdline(p).split("\0");
      return argv.some((a, i) => /(^|\/)agent-process\.[cm]?[jt]s$/.test(a) || (a === "agent" && i > 0));
    } catch {
      return false;
    }
  });
}

export interface TeardownOptions {
  stateDir: string;
  node: string;
  force?: boolean;
  say: (line: string) => void;
}

export async function teardownNode(o: TeardownOptions): Promise<CleanupReport | undefined> {
  const root = resolve(o.stateDir);
  if (root === "/" || !existsSync(root)) {
    o.say(`nothing to tear down: no state dir ${root}`);
    return undefined;
  }
  const agents = agentPids(processesNaming(root));
  if (agents.length > 0) {
    if (!o.force) {
      throw failedPrecondition(`the agent of ${root} still runs (pid ${agents.join(", ")})`, {
        reason: "AGENT_RUNNING",
        hint: "stop it first (systemctl stop protoctl-agent), or pass --force to stop it here",
      });
    }
    await terminate(agents, 10_000);
  }
  const report = await cleanupState(root, { node: o.node });
  const parts = [
    `${report.killed} process(es) stopped`,
    `${report.cgroups} cgroup(s), ${report.unmounted.length} mount(s), ${report.detached.length} loop device(s) removed`,
    `${root} ${report.removed ? "removed" : "left (could not remove everything: see above)"}`,
  ];
  o.say(`node ${o.node} torn down: ${parts.join("; ")}`);
  return report;
}

export function teardownCommand(): Command {
  return new Command("teardown")
    .description(
      "remove a stopped agent's machines, pool, mounts, loop devices, cgroups and state dir from this host",
    )
    .option("--config <file>", "the agent's YAML configuration file")
    .option("--name <name>", "the node's name (default: from the config, else the host name)")
    .option("--state-dir <dir>", "the agent's state directory (default /var/lib/protoctl/agent)")
    .option("--force", "stop the agent first if it still runs")
    .addHelpText(
      "after",
      "\nThe node stays in the cluster's records: remove it there with `protoctl node rm NAME`.\n\nExamples:\n  $ systemctl stop protoctl-agent && protoctl agent teardown\n  $ protoctl agent teardown --state-dir /tmp/a1 --name a1 --force\n",
    )
    .action(async (_o: unknown, cmd: Command) => {
      // `agent` itself takes --config, --name and --state-dir too: commander may hand them to it
      const o = cmd.optsWithGlobals() as {
        config?: string;
        name?: string;
        stateDir?: string;
        force?: boolean;
      };
      const flags: Record<string, unknown> = {};
      if (o.name) flags.name = o.name;
      if (o.stateDir) flags.stateDir = o.stateDir;
      const config = loadAgentConfig({ file: o.config, flags });
      try {
        await teardownNode({
          stateDir: config.stateDir,
          node: config.name,
          force: o.force,
          say: (l) => process.stdout.write(`${l}\n`),
        });
      } catch (err) {
        const e = ProtoctlError.from(err);
        process.stderr.write(`error: ${e.message}${e.hint ? `\n  ${e.hint}` : ""}\n`);
        process.exitCode = 1;
      }
    });
}
