/**
 * The leak check catches what it claims to, on the real system: a mount, a
 * loop device, a network namespace, a watched process, a protoctl cgroup;
 * and a leak really makes `vitest run` exit non-zero (nested vitest run).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { output, run } from "../../common/exec.js";
import { freePort } from "../fixtures/ports.js";
import { takeSnapshot } from "./collect.js";
import { nestedVitestRun } from "./nested-run.js";
import { diffSnapshots, RUN_MARKER_ENV } from "./snapshot.js";

const undo: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const u of undo.splice(0).reverse()) await u().catch(() => undefined);
});

describe("leak check on the live system", () => {
  it("reports a leaked mount, loop device and netns, and nothing once they are gone", async () => {
    const runId = process.env[RUN_MARKER_ENV] ?? "test";
    const dir = await mkdtemp(join(tmpdir(), "protoctl-leaktest-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const before = await takeSnapshot();

    const mnt = join(dir, "mnt");
    await mkdir(mnt);
    await run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]);
    undo.push(() => run("umount", [mnt]));
    const img = join(dir, "img");
    await run("truncate", ["-s", "1M", img]);
    const loop = await output("losetup", ["--find", "--show", img]);
    undo.push(() => run("losetup", ["-d", loop]));
    const ns = `ptleak-${process.pid % 100000}`;
    await run("ip", ["netns", "add", ns]);
    undo.push(() => run("ip", ["netns", "del", ns]));

    const leaks = diffSnapshots(before, await takeSnapshot(), runId).map((l) => `${l.kind} ${l.what}`);
    expect(leaks).toContain(`mount ${mnt} tmpfs tmpfs`);
    expect(leaks).toContain(`loop ${loop} ${img}`);
    expect(leaks).toContain(`netns ${ns}`);
    expect(leaks).toContain(`mount /run/netns/${ns} nsfs nsfs`);

    for (const u of undo.splice(1).reverse()) await u();
    expect(diffSnapshots(before, await takeSnapshot(), runId)).toEqual([]);
  });

  it("reports a loop device orphaned on a pool tmpfs that was unmounted under it", async () => {
    const runId = process.env[RUN_MARKER_ENV] ?? "test";
    const dir = await mkdtemp(join(tmpdir(), "protoctl-leaktest-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const before = await takeSnapshot();
    await run("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir]);
    await run("truncate", ["-s", "1M", join(dir, "pool.img")]);
    const loop = await output("losetup", ["--find", "--show", join(dir, "pool.img")]);
    undo.push(() => run("losetup", ["-d", loop]));
    // what a killed run's cleanup did: the tmpfs lazily unmounted, the loop device still bound
    await run("umount", ["-l", dir]);
    const leaks = diffSnapshots(before, await takeSnapshot(), runId).map((l) => `${l.kind} ${l.what}`);
    expect(leaks).toContain(`loop ${loop} /pool.img`);
    // seen again by a later run that started with it already there
    const later = await takeSnapshot();
    expect(diffSnapshots(later, later, runId).map((l) => `${l.kind} ${l.what}`)).toEqual([
      `loop ${loop} /pool.img (orphaned before this run too: its tmpfs is gone; losetup -d it)`,
    ]);
    await run("losetup", ["-d", loop]);
    undo.pop();
  });

  it("reports a leaked etcd process and a protoctl cgroup", async () => {
    // The globalSetup's run marker reaches the test workers, and so every process they spawn.
    const runId = process.env[RUN_MARKER_ENV];
    expect(runId).toMatch(/^[0-9a-f]{8}$/);
    const before = await takeSnapshot();
    const dir = await mkdtemp(join(tmpdir(), "protoctl-leaktest-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    // Not listening anywhere but loopback on ports the kernel picks.
    const [client, peer] = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
    const child: ChildProcess = spawn(
      "etcd",
      [
        ...["--data-dir", dir, "--listen-client-urls", client, "--advertise-client-urls", client],
        ...[
          "--listen-peer-urls",
          peer,
          "--initial-advertise-peer-urls",
          peer,
          "--initial-cluster",
          `default=${peer}`,
        ],
      ],
      { stdio: "ignore" },
    );
    const exited = new Promise((r) => child.once("exit", r));
    undo.push(async () => {
      child.kill("SIGKILL");
      await exited;
    });
    const cg = `/sys/fs/cgroup/pids/protoctl-leaktest-${process.pid}`;
    await mkdir(cg);
    undo.push(() => rmdir(cg));

    const leaks = diffSnapshots(before, await takeSnapshot(), runId!);
    expect(leaks).toContainEqual({ kind: "cgroup", what: cg });
    expect(
      leaks.find((l) => l.kind === "process" && l.what.startsWith(`pid ${child.pid} (etcd)`)),
    ).toBeDefined();
    // The same process started by another test run is that run's business.
    expect(diffSnapshots(before, await takeSnapshot(), "another-run").some((l) => l.kind === "process")).toBe(
      false,
    );
  });
});

describe("a leak fails `vitest run`", () => {
  async function nestedRun(leak: boolean): Promise<{ code: number | null; out: string; mnt: string }> {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-nested-"));
    const mnt = join(dir, "mnt");
    await mkdir(mnt);
    undo.push(async () => {
      await run("umount", [mnt], { allowFailure: true });
      await rm(dir, { recursive: true, force: true });
    });
    const { code, out } = await nestedVitestRun(
      dir,
      `import { execFileSync } from "node:child_process";
test("mounts a tmpfs", () => {
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", ${JSON.stringify(mnt)}]);
  ${leak ? "" : `execFileSync("umount", [${JSON.stringify(mnt)}]);`}
});
`,
    );
    return { code, out, mnt };
  }

  it("exits 1 and names the mount when a test file leaves one", async () => {
    const { code, out, mnt } = await nestedRun(true);
    expect(out).toMatch(/1 passed/);
    expect(out).toContain("leak check FAILED");
    expect(out).toContain(`mount   ${mnt} tmpfs tmpfs`);
    expect(code).toBe(1);
    expect(await readFile("/proc/self/mountinfo", "utf8")).toContain(mnt);
  });

  it("exits 0 when the test file cleans up", async () => {
    const { code, out } = await nestedRun(false);
    expect(out).toContain("leak check: nothing left behind");
    expect(code).toBe(0);
  });
});
