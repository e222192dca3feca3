/**
 * Where protoctl-enter (enter/enter.c) is, and the once-per-env copy of PID 1's
 * seccomp filter that every exec loads. The binary sits beside this module:
 * dist/agent/host/machines/enter/ after `npm run build`, or
 * agent/host/machines/enter/ when the agent runs from sources (built by the
 * integration tests' setup). PROTOCTL_ENTER overrides both.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { failedPrecondition } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";

export function enterHelperPath(): string {
  return process.env.PROTOCTL_ENTER || fileURLToPath(new URL("./enter/protoctl-enter", import.meta.url));
}

/** Throws FAILED_PRECONDITION when the helper is missing: execs never fall back to nsenter. */
export function requireEnterHelper(): string {
  const p = enterHelperPath();
  if (!existsSync(p)) {
    throw failedPrecondition(`protoctl-enter is missing (${p})`, {
      reason: "ENTER_HELPER_MISSING",
      hint: "run `npm run build` (needs cc and libc6-dev)",
    });
  }
  return p;
}

/**
 * Copies the seccomp filters of `leaderPid` (the env's PID 1) into `file`.
 * The leader is ptrace-stopped for the copy (a few ms).
 */
export async function dumpSeccomp(leaderPid: number, file: string): Promise<void> {
  await run(requireEnterHelper(), ["dump", String(leaderPid), file]);
}
