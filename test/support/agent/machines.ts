/**
 * Test helpers for machine tests (used by *.int.test.ts only): a btrfs test
 * pool with a busybox base subvolume, env roots as snapshots of it, and
 * collecting an exec session's output.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecSession } from "../../../agent/host/interfaces.js";
import { drainAfterExit } from "../../../agent/host/machines/exec-session.js";
import { run } from "../../../common/exec.js";
import { makeTestPool, type TestPool } from "../../fixtures/pool.js";
import { makeBusyboxRootfs } from "../../fixtures/rootfs.js";

export interface MachineTestBed {
  pool: TestPool;
  stateDir: string;
  base: string;
  /** Snapshot of the busybox base as a fresh env root. */
  envRoot(name: string): Promise<string>;
  cleanup(): Promise<void>;
}

export async function makeMachineTestBed(): Promise<MachineTestBed> {
  const pool = await makeTestPool({ sizeMiB: 256 });
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-machines-"));
  const base = join(pool.mountpoint, "base");
  await run("btrfs", ["subvolume", "create", base]);
  await makeBusyboxRootfs(base);
  const roots: string[] = [];
  return {
    pool,
    stateDir,
    base,
    async envRoot(name) {
      const dir = join(pool.mountpoint, `env-${name}`);
      await run("btrfs", ["subvolume", "snapshot", base, dir]);
      roots.push(dir);
      return dir;
    },
    async cleanup() {
      for (const r of roots) await run("btrfs", ["subvolume", "delete", r], { allowFailure: true });
      await pool.cleanup();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

export async function collect(
  s: ExecSession,
  input?: string,
): Promise<{ stdout: string; stderr: string; code: number }> {
  let stdout = "";
  let stderr = "";
  s.stdout.on("data", (b: Buffer) => {
    stdout += b.toString();
  });
  s.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  if (input !== undefined) s.stdin.write(input);
  s.stdin.end();
  const code = await drainAfterExit(s);
  return { stdout, stderr, code };
}
