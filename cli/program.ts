/**
 * The `protoctl` command tree, loaded lazily: the root knows each top-level
 * command's name and one-line summary; the module that defines a command (its
 * flags, help, action) is imported only when argv names it. `protoctl env ls`
 * therefore never loads the base, lab or up code, and no user command loads the
 * agent or the controller.
 */
import { Command } from "commander";
import { EXIT_CODES_HELP } from "./exit-codes.js";

/** A module that defines one or more top-level commands. */
export interface CommandModule {
  command(name: string): Command | Promise<Command>;
}

interface Entry {
  name: string;
  summary: string;
  hidden?: boolean;
  /** Long-running programs with their own modules: never loaded for completion. */
  daemon?: boolean;
  load(): Promise<CommandModule>;
}

/** Top-level commands, in help order. Several names may share a module. */
export const ENTRIES: Entry[] = [
  {
    name: "up",
    summary: "start a one-machine cluster (etcd, controller, local agent)",
    load: () => import("./commands/up.js"),
  },
  {
    name: "down",
    summary: "stop the one-machine cluster and remove what it made",
    load: () => import("./commands/up.js"),
  },
  {
    name: "doctor",
    summary: "check this host for what protoctl needs",
    load: () => import("./commands/doctor-entry.js"),
  },
  {
    name: "version",
    summary: "print the CLI and controller versions",
    load: () => import("./commands/version.js"),
  },
  {
    name: "context",
    summary: "manage controller contexts: ls, use, show, add, import, rm",
    load: () => import("./commands/context.js"),
  },
  {
    name: "node",
    summary: "nodes: ls, describe, cordon, drain, uncordon, token",
    load: () => import("./commands/node.js"),
  },
  {
    name: "user",
    summary: "users and roles: add, ls, rm",
    load: () => import("./commands/user.js"),
  },
  {
    name: "base",
    summary: "bases: import, build, update, ls, describe, push, rm",
    load: () => import("./commands/base.js"),
  },
  { name: "layer", summary: "layers: add, ls, describe, rm", load: () => import("./commands/layer.js") },
  {
    name: "env",
    summary: "environments: create, ls, exec, shell, logs, stop, rm, ...",
    load: () => import("./commands/env.js"),
  },
  { name: "lab", summary: "labs: up, down, ls, describe, graph", load: () => import("./commands/lab.js") },
  { name: "events", summary: "stream cluster events", load: () => import("./commands/events.js") },
  {
    name: "console",
    summary: "print and open a sign-in link to the web console",
    load: () => import("./commands/console.js"),
  },
  {
    name: "completion",
    summary: "print a shell completion script (bash|zsh)",
    load: () => import("./commands/completion.js"),
  },
  {
    name: "agent",
    summary: "run a node agent (daemon)",
    daemon: true,
    load: () => import("./commands/daemons.js"),
  },
  {
    name: "controller",
    summary: "run a controller (daemon)",
    daemon: true,
    load: () => import("./commands/daemons.js"),
  },
  {
    name: "supervise",
    summary: "supervise the processes of `protoctl up`",
    hidden: true,
    load: () => import("./commands/up.js"),
  },
  {
    name: "__complete",
    summary: "completion helper",
    hidden: true,
    load: () => import("./commands/completion.js"),
  },
];

/** Options of the root command that take a value (to find the command name in argv). */
const ROOT_VALUE_OPTIONS = new Set(["--context"]);

/** The first operand of argv (after the root's own options), i.e. the top-level command name. */
export function commandNameOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") return undefined;
    if (ROOT_VALUE_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith("-")) continue;
    return a;
  }
  return undefined;
}

/** Applies the settings every command needs (commander does not copy them to added commands). */
export function applySettings(cmd: Command): void {
  cmd.exitOverride();
  cmd.configureOutput({
    writeOut: (s) => process.stdout.write(s),
    writeErr: (s) => process.stderr.write(s),
  });
  if (cmd.parent) cmd.showHelpAfterError(`(see \`${commandPath(cmd)} --help\`)`);
  for (const sub of cmd.commands) applySettings(sub);
}

function commandPath(cmd: Command): string {
  const parts: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) parts.unshift(c.name());
  return parts.join(" ");
}

/** The root with placeholders for every top-level command. */
export function rootCommand(version: string): Command {
  const program = new Command("protoctl")
    .description(
      "Disposable Linux environments across a fleet: btrfs bases, overlay layers, nspawn machines.",
    )
    .version(version, "-V, --version", "print the CLI version")
    .option("--context <name>", "use this context from the config file (env: PROTOCTL_CONTEXT)")
    .helpCommand("help [command]", "help for a command")
    .addHelpText(
      "after",
      `
Examples:
  $ protoctl up
  $ protoctl base import busybox --dir ./rootfs
  $ protoctl env create demo --base busybox
  $ protoctl env exec demo -- uname -a

Environment: PROTOCTL_CONTEXT (context name), PROTOCTL_CONTROLLER (controller address),
  PROTOCTL_CONFIG (config file), PROTOCTL_DEBUG=1 (stack traces).

${EXIT_CODES_HELP}
`,
    );
  return program;
}

/**
 * Builds the program for argv: the named command's module is loaded and its
 * command added; every other top-level command is a placeholder carrying its
 * summary for `protoctl --help`. `all` loads everything (completion).
 */
export async function buildProgram(args: readonly string[], version: string, all = false): Promise<Command> {
  const program = rootCommand(version);
  let wanted = commandNameOf(args);
  if (wanted === "help") wanted = commandNameOf(args.slice(args.indexOf("help") + 1));
  for (const e of ENTRIES) {
    let cmd: Command;
    if ((all && !e.daemon) || e.name === wanted) {
      cmd = await (await e.load()).command(e.name);
    } else {
      cmd = new Command(e.name).description(e.summary).allowUnknownOption().allowExcessArguments();
    }
    program.addCommand(cmd, e.hidden ? { hidden: true } : {});
  }
  applySettings(program);
  return program;
}
