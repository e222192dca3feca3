/**
 * Propagation's records on disk (<dir>/seeds/*.json, <dir>/attachments/*.json):
 * written aside and renamed, read back at start-up with what a crash left
 * half-written removed.
 */
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../common/atomic-file.js";

/** The records in `dir` (one JSON file each); removes leftover temporary files first. */
export async function readRecords<T>(dir: string): Promise<Array<{ file: string; rec: T }>> {
  const out: Array<{ file: string; rec: T }> = [];
  for (const f of await readdir(dir)) {
    if (f.endsWith(".tmp") || f.startsWith(".")) {
      await rm(join(dir, f), { force: true, recursive: true });
      continue;
    }
    if (!f.endsWith(".json")) continue;
    out.push({ file: f, rec: JSON.parse(await readFile(join(dir, f), "utf8")) as T });
  }
  return out;
}

/** Writes `rec` to `file` atomically. */
export async function writeRecord(file: string, rec: unknown): Promise<void> {
  // two writes of one record may overlap (an attach and its hydration): each has a temp name of its own
  await writeFileAtomic(file, `${JSON.stringify(rec)}\n`);
}
