/**
 * A file written whole or not at all: the text goes to a temporary file of
 * its own in the same directory (exclusive create, so a symlink planted at
 * that name is never written through), gets its mode, and is renamed over
 * the target. A reader sees the old file or the new one, never half; a
 * symlink at the target is replaced, not followed. No fsync: this guards
 * against a killed process, not power loss.
 */
import { randomBytes } from "node:crypto";
import { chmod, rename, rm, writeFile } from "node:fs/promises";

export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, text, { mode, flag: "wx" });
    await chmod(tmp, mode); // the umask applies to writeFile's mode
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
