/**
 * Starts a machine's nspawn command: in its own session (it outlives the
 * agent), inside the env's cgroups before it runs, stdout and stderr appended
 * to the console log file (no pipe through the agent).
 *
 * Through protoctl-spawner (spawner.ts) when it is built: no fork of the
 * agent, no `sh` wrapper exec (measured in spawner.c's header). Otherwise
 * Node's spawn of `sh <join-cgroups> … -- command` as before.
 */
import { closeSync, openSync } from "node:fs";
import { internal } from "../../../common/errors.js";
import { spawnDirect } from "../../../common/exec.js";
import { wrapInCgroups } from "./nspawn-args.js";
import { SpawnerError, sharedSpawner } from "./spawner.js";

export interface SpawnedMachine {
  pid: number;
  /** Called once with the exit code (undefined when killed by a signal). */
  onExit(cb: (code: number | undefined) => void): void;
  /**
   * The container leader's pid as nspawn announced it (sd_notify through the
   * spawner), before the leader has exec'd its payload; pending forever when
   * it never comes (the caller scans /proc then).
   */
  leader?: Promise<number>;
}

/** nspawn's NOTIFY_SOCKET beside the console log; unset when the path is too long for a socket. */
function notifyPath(logFile: string): string | undefined {
  const p = `${logFile.replace(/\.log$/, "")}.notify`;
  return Buffer.byteLength(p) < 100 ? p : undefined;
}

export async function spawnMachine(
  logFile: string,
  procsFiles: string[],
  command: string[],
  env: Record<string, string>,
): Promise<SpawnedMachine> {
  const spawner = sharedSpawner();
  if (spawner) {
    let code: number | undefined;
    let exited = false;
    let listener: ((c: number | undefined) => void) | undefined;
    let onLeader: (pid: number) => void = () => undefined;
    const leader = new Promise<number>((resolve) => {
      onLeader = resolve;
    });
    const notifySocket = notifyPath(logFile);
    const withNotify = notifySocket ? { ...env, NOTIFY_SOCKET: notifySocket } : env;
    const pid = await spawner
      .start(
        { procsFiles, logFile, env: withNotify, argv: command, notifySocket },
        {
          onExit: (e) => {
            exited = true;
            code = e.code ?? undefined;
            listener?.(code);
          },
          onLeader,
        },
      )
      .catch((err: unknown) => {
        if (err instanceof SpawnerError)
          throw internal(`cannot start ${command[0]} (${err.message})`, { reason: "MACHINE_START_FAILED" });
        throw err;
      });
    return {
      pid,
      leader: notifySocket ? leader : undefined,
      onExit(cb) {
        if (exited) cb(code);
        else listener = cb;
      },
    };
  }
  const fd = openSync(logFile, "a", 0o600);
  let child: ReturnType<typeof spawnDirect>;
  try {
    // the log file's fd itself, not a pipe through us: the machine must outlive the agent
    child = spawnDirect("/bin/sh", wrapInCgroups(procsFiles, command), {
      detached: true,
      stdio: ["ignore", fd, fd],
      env,
    });
  } finally {
    closeSync(fd);
  }
  child.on("error", () => undefined);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw internal(`${command[0]} did not start`);
  return {
    pid,
    // only the exit code is kept; the ChildProcess itself goes once it exits
    onExit: (cb) => child.once("exit", (c) => cb(c ?? undefined)),
  };
}
