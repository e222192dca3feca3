/**
 * systemd-nspawn's command line for an env, as an argv array (pure, unit
 * tested). User data only ever becomes whole argv entries after validation;
 * the wrapper scripts here are fixed text.
 */
import type { MachineSpec } from "../interfaces.js";
import { CONTAINER_IFACE } from "./naming.js";

/**
 * Command mode's init: the container needs a PID 1 that stays up, reaps
 * orphans and exits cleanly on SIGTERM (busybox has no real init). Fixed text.
 */
export const COMMAND_MODE_INIT = 'trap "exit 0" TERM INT HUP; while :; do sleep 86400 & wait; done';

/**
 * Command mode with a command (an OCI image's default): the init above
 * starts it first (its argv follows as "$@"), says how it ended in the log,
 * then idles, so the env stays up for exec and cp after it. Fixed text.
 */
export const COMMAND_MODE_INIT_WITH_COMMAND =
  'trap "exit 0" TERM INT HUP; "$@" </dev/null & wait $!; echo "protoctl: the env command exited with status $?"; ' +
  "while :; do sleep 86400 & wait; done";

/**
 * The wrapper every machine and exec starts through: it writes its own pid
 * into each cgroup.procs file given before `--`, then execs the rest, so the
 * process is inside the env's cgroups before it can fork. Fixed text; the
 * paths and the command arrive as separate argv entries.
 */
export const JOIN_CGROUPS_SCRIPT =
  'while [ "$#" -gt 0 ] && [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';

export function wrapInCgroups(procsFiles: string[], argv: string[]): string[] {
  return ["-c", JOIN_CGROUPS_SCRIPT, "protoctl-join", ...procsFiles, "--", ...argv];
}

export interface NspawnArgsInput {
  spec: MachineSpec;
  machine: string;
  /** Host side name of the env's veth (private and bridge modes, one link). */
  vethHost?: string;
  /** Every veth as [host side, inside] (takes precedence over vethHost). */
  links?: Array<{ hostIf: string; ifname: string }>;
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function nspawnArgs({ spec, machine, vethHost, links }: NspawnArgsInput): string[] {
  const a = [
    "--register=no",
    "--keep-unit",
    "-q",
    `--directory=${spec.rootDir}`,
    `--machine=${machine}`,
    `--hostname=${spec.hostname ?? spec.name}`,
  ];
  // Command mode: PID 1 gets SIGTERM (not nspawn's default SIGKILL) so the init exits cleanly;
  // its stdio is the console log file directly (no pty to copy through).
  // Boot mode: systemd wants a console; nspawn copies it to its stdout (the log file).
  // Unprivileged by default: root inside maps to a range nspawn picks (and
  // locks) per machine; the snapshot is idmapped, so files keep their on-disk ids.
  if (!spec.privileged) a.push("--private-users=pick", "--private-users-ownership=map");
  if (spec.boot) a.push("--console=read-only", "--kill-signal=SIGRTMIN+3");
  else a.push("--console=pipe", "--kill-signal=SIGTERM");
  for (const [k, v] of Object.entries(spec.env)) {
    if (!ENV_KEY.test(k)) throw new Error(`invalid environment variable name ${JSON.stringify(k)}`);
    a.push(`--setenv=${k}=${v}`);
  }
  const net = spec.network;
  switch (net.mode) {
    case "host":
      break;
    case "private":
    case "bridge":
      if (links?.length) {
        for (const l of links) a.push(`--network-veth-extra=${l.hostIf}:${l.ifname}`);
        break;
      }
      if (!vethHost) throw new Error("a veth name is needed for private and bridge networks");
      a.push(`--network-veth-extra=${vethHost}:${CONTAINER_IFACE}`);
      break;
    default:
      a.push("--private-network");
  }
  for (const p of net.ports ?? []) a.push(`--port=${p.protocol}:${p.hostPort}:${p.containerPort}`);
  const cmd = spec.boot ? undefined : spec.command;
  if (cmd?.workdir) a.push(`--chdir=${cmd.workdir}`);
  if (cmd?.user) a.push(`--user=${cmd.user}`);
  if (spec.boot) a.push("--boot");
  else if (cmd?.argv.length)
    a.push("--", "/bin/sh", "-c", COMMAND_MODE_INIT_WITH_COMMAND, "protoctl-init", ...cmd.argv);
  else a.push("--", "/bin/sh", "-c", COMMAND_MODE_INIT);
  return a;
}
