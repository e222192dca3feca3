/**
 * Where protoctl-enter (enter/enter.c) is. The binary sits beside this module:
 * dist/agent/host/machines/enter/ after `npm run build`, or
 * agent/host/machines/enter/ when the agent runs from sources (built by the
 * integration tests' setup). PROTOCTL_ENTER overrides both.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { failedPrecondition } from "../../../common/errors.js";

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
