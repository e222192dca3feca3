/**
 * A python3 helper started ahead of time: it waits for one line on stdin,
 * then does a few syscalls Node cannot (ioctls, mount(2)) and prints a word
 * when it succeeded. Starting python costs ~25 ms (more under load); started
 * early, that cost hides behind other work (loop.ts, sprout.ts). The scripts
 * are fixed; what reaches them is paths the agent made, as arguments or on
 * that one line.
 */
import { existsSync } from "node:fs";
import { CommandError, spawnProcess } from "../../../common/exec.js";

/**
 * The distribution's interpreter, isolated (-I) and without site packages
 * (-S). A python3 found first on PATH may be a version manager's shim
 * (pyenv: ~240 ms here).
 */
const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

export interface WaitingHelper {
  /**
   * Sends `line`; resolves when the helper printed `done`, else rejects with a
   * CommandError named by `name(exitCode)` showing `shown` as its arguments.
   */
  run(line: string, done: string, name: (exitCode?: number) => string, shown: string[]): Promise<void>;
  /** Lets the helper exit without doing anything (no-op after run). */
  cancel(): Promise<void>;
}

export function startHelper(script: string, args: string[] = []): WaitingHelper {
  const child = spawnProcess(PYTHON, ["-I", "-S", "-c", script, ...args], { stdin: "pipe", reject: false });
  let used = false;
  const send = (line: string) => {
    if (used) throw new Error("a prepared helper runs once");
    used = true;
    child.stdin?.end(line);
    return child;
  };
  return {
    async run(line, done, name, shown) {
      const res = await send(line);
      if (res.exitCode !== 0 || !String(res.stdout).includes(done)) {
        throw new CommandError(
          name(res.exitCode),
          shown,
          res.exitCode,
          String(res.stderr ?? ""),
          String(res.stdout ?? ""),
          res.signal,
          false,
        );
      }
    },
    async cancel() {
      if (!used) await send("\n");
    },
  };
}
