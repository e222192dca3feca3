/**
 * A lock shared by every agent process on one host (atomic mkdir under
 * /run/lock, the holder's pid inside; a dead holder's lock is taken over).
 *
 * Why: while a seed is mounted read-only and not yet sprouted, mounting the
 * same seed (same fsid) from another loop device fails with EEXIST (measured
 * here, 6.18). Several agents on one host (tests, benches) attaching the same
 * seed at once must take turns for those few steps; sprouted mounts coexist.
 * Finding a free loop device takes turns too (loop.ts attachLoop).
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

const LOCK_ROOT = "/run/lock";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Runs `fn` holding the host-wide lock `name` (letters, digits, dashes). */
export async function withHostLock<T>(name: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const dir = join(LOCK_ROOT, `protoctl-${name.replace(/[^A-Za-z0-9-]/g, "-")}.lock`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await mkdir(dir);
      await writeFile(join(dir, "pid"), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number((await readFile(join(dir, "pid"), "utf8").catch(() => "")).trim());
      if (pid > 0 && !alive(pid)) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`host lock ${dir} held by pid ${pid || "?"} for too long`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
