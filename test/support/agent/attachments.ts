/**
 * Helpers for the attachment integration tests: an origin (pool, base with
 * large random files, sealed seed image), extra sources of the same bytes,
 * a reader that keeps reading during hydration, and a check that an
 * attachment left nothing behind.
 */
import { createHash } from "node:crypto";
import { copyFile, open, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ResultPromise } from "execa";
import { publishSeedImage } from "../../../agent/host/exports/seed-image.js";
import type { SeedImage } from "../../../agent/host/exports/types.js";
import { output, run, spawnProcess } from "../../../common/exec.js";
import { makeTestPool, type TestPool } from "../../fixtures/pool.js";
import { freePort } from "../../fixtures/ports.js";
import { makeBaseSubvolume, treeDigest } from "./exports.js";

export interface Origin {
  pool: TestPool;
  base: string;
  seed: SeedImage;
  digest: Map<string, string>;
  cleanup(): Promise<void>;
}

/** A pool with base `name` (busybox + random files of `bigMiB`) published as a seed image. */
export async function makeOrigin(name: string, bigMiB: number[], poolMiB = 1024): Promise<Origin> {
  const pool = await makeTestPool({ sizeMiB: poolMiB, prefix: "protoctl-origin-" });
  try {
    const base = await makeBaseSubvolume(pool.mountpoint, name, bigMiB);
    const seed = await publishSeedImage(base, join(pool.tmpfs, `${name}.img`));
    return { pool, base, seed, digest: await treeDigest(base), cleanup: () => pool.cleanup() };
  } catch (err) {
    await pool.cleanup();
    throw err;
  }
}

/** A copy of the image with `count` bytes flipped at `offset` (a corrupt source). */
export async function corruptCopy(image: string, dest: string, offset: number, count = 16): Promise<void> {
  await copyFile(image, dest);
  const fh = await open(dest, "r+");
  try {
    const b = Buffer.alloc(count);
    await fh.read(b, 0, count, offset);
    for (let i = 0; i < count; i++) b[i] = b[i]! ^ 0xff;
    await fh.write(b, 0, count, offset);
  } finally {
    await fh.close();
  }
}

export interface TestNbdkit {
  uri: string;
  port: number;
  child: ResultPromise;
  kill(): Promise<void>;
}

/**
 * A read-only nbdkit on 127.0.0.1 (a free port) running `args` (filters,
 * plugin, parameters), answering by the time this returns. A port taken
 * between the pick and nbdkit's bind (an outgoing connection can get it) makes
 * nbdkit exit: then it is tried again on another port; never answering is an
 * error, not a source that refuses every connection.
 */
export async function startTestNbdkit(args: string[]): Promise<TestNbdkit> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawnProcess("nbdkit", ["-f", "-r", "-i", "127.0.0.1", "-p", String(port), ...args], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      reject: false,
    });
    let exited = false;
    void child.then(() => {
      exited = true;
    });
    const uri = `nbd://127.0.0.1:${port}/`;
    const kill = async () => {
      child.kill("SIGKILL");
      await child;
    };
    for (let i = 0; i < 400 && !exited; i++) {
      const r = await run("nbdinfo", ["--size", uri], { allowFailure: true });
      if (r.exitCode === 0) return { uri, port, child, kill };
      await new Promise((res) => setTimeout(res, 25));
    }
    const why = exited ? `exited: ${String((await child).stderr).trim()}` : "did not answer in 10 s";
    await kill();
    if (attempt >= 5) throw new Error(`nbdkit ${args.join(" ")} on port ${port} ${why}`);
  }
}

/**
 * A deliberately slow source: nbdkit's file plugin behind the rate filter
 * (bits per second), so a test can kill it in the middle of a hydration.
 */
export function slowSource(image: string, bitsPerSecond: string): Promise<TestNbdkit> {
  return startTestNbdkit(["--filter=rate", "file", image, `rate=${bitsPerSecond}`]);
}

/** Reads `file` over and over, comparing with `sha256`, until stopped. */
export function startReader(file: string, sha256: string) {
  let stop = false;
  const stats = { reads: 0, errors: 0, mismatches: 0, lastError: "" };
  const done = (async () => {
    while (!stop) {
      try {
        const h = createHash("sha256")
          .update(await readFile(file))
          .digest("hex");
        if (h === sha256) stats.reads++;
        else stats.mismatches++;
      } catch (err) {
        stats.errors++;
        stats.lastError = String(err);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  return {
    stats,
    stop: async () => {
      stop = true;
      await done;
      return stats;
    },
  };
}

export async function sha256Of(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

/** Loop devices, mounts and processes that mention `dir` (should be none after detach). */
export async function leftovers(stateDir: string): Promise<string[]> {
  const dir = `${stateDir}/`;
  const found: string[] = [];
  const loops = JSON.parse((await output("losetup", ["-J"])) || '{"loopdevices":[]}') as {
    loopdevices: Array<{ name: string; "back-file": string | null }>;
  };
  for (const l of loops.loopdevices)
    if (l["back-file"]?.includes(dir)) found.push(`loop ${l.name} ${l["back-file"]}`);
  for (const line of (await readFile("/proc/self/mountinfo", "utf8")).split("\n")) {
    if (line.includes(dir)) found.push(`mount ${line}`);
  }
  const ps = await output("ps", ["-eo", "pid,args"]);
  for (const line of ps.split("\n"))
    if (line.includes(dir) && !line.includes("ps -eo")) found.push(`process ${line}`);
  return found;
}
