/**
 * A failed env keeps what its machine said (issue 17 item 8): the agent's
 * error carries the console's last lines (`output`, e.g. nspawn's own
 * "Failed to determine whether the unified cgroups hierarchy is used"), and
 * they go into the env's status message, which stays until the env is
 * removed. So `env create` prints them, `env describe` shows them, and
 * `env logs` falls back to them when the agent no longer has the machine.
 */
import type { ProtoctlError } from "../../common/errors.js";

const MAX_LINES = 20;
const MAX_BYTES = 4096;
export const OUTPUT_MARK = "\n--- the machine's last output ---\n";

/** The status message of a failure: its message, then the machine's last output lines if any. */
export function failureMessage(pe: Pick<ProtoctlError, "message" | "output">): string {
  const lines = (pe.output ?? "").split("\n").filter((l) => l.trim() !== "");
  if (lines.length === 0) return pe.message;
  let tail = lines.slice(-MAX_LINES).join("\n");
  if (tail.length > MAX_BYTES) tail = tail.slice(-MAX_BYTES);
  return `${pe.message}${OUTPUT_MARK}${tail}`;
}

/** The machine output kept in a status message ("" when none). */
export function keptOutput(message: string): string {
  const i = message.indexOf(OUTPUT_MARK);
  return i < 0 ? "" : `${message.slice(i + OUTPUT_MARK.length)}\n`;
}
