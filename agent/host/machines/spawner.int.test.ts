import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { output, run } from "../../../common/exec.js";
import { makeTestPool } from "../../../test/fixtures/pool.js";
import { parseQgroupShow } from "../pool/parsers.js";
import { Spawner, SpawnerError, spawnerPath } from "./spawner.js";

const dir = mkdtempSync(join(tmpdir(), "protoctl-spawner-"));
const spawner = new Spawner(spawnerPath());

afterAll(() => {
  spawner.stop();
  rmSync(dir, { recursive: true, force: true });
});

function exitOf(): { events: { onExit(e: { code: number | null }): void }; done: Promise<number | null> } {
  let resolve: (c: number | null) => void = () => undefined;
  const done = new Promise<number | null>((r) => {
    resolve = r;
  });
  return { events: { onExit: (e) => resolve(e.code) }, done };
}

describe("protoctl-spawner", () => {
  it("runs argv words as given, with exactly the env given, in a new session, output to the log", async () => {
    const log = join(dir, "a.log");
    const x = exitOf();
    const pid = await spawner.start(
      {
        procsFiles: [],
        logFile: log,
        env: { PATH: "/usr/bin:/bin", ONLY: "a b;$(x)" },
        // $0 and $1 are words, not shell text of ours: the script prints them back
        argv: ["sh", "-c", 'echo "$1|$ONLY|$(env | wc -l)|$(ps -o sid= -p $$)"; exit 3', "w0", "; rm -rf /"],
      },
      x.events,
    );
    expect(await x.done).toBe(3);
    const [arg, env, count, sid] = readFileSync(log, "utf8").trim().split("|");
    expect(arg).toBe("; rm -rf /");
    expect(env).toBe("a b;$(x)");
    expect(Number(count)).toBeLessThanOrEqual(4); // PATH, ONLY and what sh sets itself (PWD, SHLVL)
    expect(Number(sid)).toBe(pid);
    expect(statSync(log).mode & 0o777).toBe(0o600);
  });

  it("refuses, running nothing, when a cgroup cannot be joined or the command is missing", async () => {
    const log = join(dir, "b.log");
    const marker = join(dir, "ran");
    const start = (procsFiles: string[], argv0: string) =>
      spawner.start({ procsFiles, logFile: log, env: { PATH: "/usr/bin:/bin" }, argv: [argv0, marker] });
    const e1 = await start([join(dir, "no-cgroup", "cgroup.procs")], "touch").catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(SpawnerError);
    expect((e1 as SpawnerError).stage).toBe("cgroup");
    expect((e1 as SpawnerError).code).toBe("ENOENT");
    const e2 = await start([], "protoctl-no-such-command").catch((e: unknown) => e);
    expect((e2 as SpawnerError).stage).toBe("exec");
    await new Promise((r) => setTimeout(r, 50));
    expect(() => statSync(marker)).toThrow();
  });

  it("refuses a snapshot outside btrfs with the kernel's errno", async () => {
    const e = await spawner
      .snapshot({ source: dir, parent: dir, name: "snap", readonly: false })
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(SpawnerError);
    expect((e as SpawnerError).stage).toBe("ioctl");
  });

  it("snapshots with a disk limit in one request; a limit that cannot be set leaves no snapshot", async () => {
    const pool = await makeTestPool({ sizeMiB: 256, prefix: "protoctl-spawner-pool-" });
    try {
      const mp = pool.mountpoint;
      await run("btrfs", ["-q", "subvolume", "create", join(mp, "base")]);
      const MiB = 2 ** 20;
      const snap = (name: string) =>
        spawner.snapshot({
          source: join(mp, "base"),
          parent: mp,
          name,
          readonly: false,
          limitBytes: 8 * MiB,
        });
      // quotas are off: the limit fails, and the snapshot made for it is gone again
      const e = await snap("early").catch((err: unknown) => err);
      expect(e).toBeInstanceOf(SpawnerError);
      expect((e as SpawnerError).stage).toBe("limit");
      expect(existsSync(join(mp, "early"))).toBe(false);

      await spawner.enableSimpleQuotas(mp);
      await spawner.enableSimpleQuotas(mp); // on already: a no-op
      await snap("env");
      const id = (await output("btrfs", ["inspect-internal", "rootid", join(mp, "env")])).trim();
      const show = parseQgroupShow(await output("btrfs", ["qgroup", "show", "-re", "--raw", mp]));
      expect(show.get(`0/${id}`)?.maxReferenced).toBe(8 * MiB);
      // the kernel enforces it: writing 16 MiB stops with EDQUOT at the limit
      const f = await open(join(mp, "env", "fill"), "w");
      const chunk = Buffer.alloc(MiB, 1);
      let written = 0;
      const err = await (async () => {
        for (let i = 0; i < 16; i++) {
          await f.write(chunk);
          await f.sync();
          written += MiB;
        }
      })().catch((x: unknown) => x);
      await f.close().catch(() => undefined);
      // libuv has no name for it ("Unknown system error -122"): the number is the kernel's
      expect((err as NodeJS.ErrnoException | undefined)?.errno).toBe(-constants.errno.EDQUOT);
      expect(written).toBeLessThanOrEqual(8 * MiB);
    } finally {
      await pool.cleanup();
    }
  }, 60_000);

  it("destroys a subvolume; refuses a plain directory, one holding a subvolume and a symlinked parent, changing nothing", async () => {
    const pool = await makeTestPool({ sizeMiB: 256, prefix: "protoctl-spawner-pool-" });
    try {
      const mp = pool.mountpoint;
      for (const n of ["a", "outer", "outer/inner"])
        await run("btrfs", ["-q", "subvolume", "create", join(mp, n)]);
      await run("mkdir", [join(mp, "plain")]);
      await run("ln", ["-s", mp, join(mp, "link")]);
      const stage = (p: Promise<void>) =>
        p.then(
          () => "ok",
          (err: unknown) => (err instanceof SpawnerError ? `${err.stage} ${err.code}` : String(err)),
        );
      expect(await stage(spawner.destroy(mp, "a"))).toBe("ok");
      expect(existsSync(join(mp, "a"))).toBe(false);
      // what the kernel refuses stays as it was: the agent's fallback (btrfs-progs) then says why
      expect(await stage(spawner.destroy(mp, "plain"))).toBe("ioctl EINVAL");
      expect(await stage(spawner.destroy(mp, "outer"))).toBe("ioctl ENOTEMPTY");
      expect(await stage(spawner.destroy(mp, "missing"))).toBe("ioctl ENOENT");
      expect(await stage(spawner.destroy(join(mp, "link"), "outer"))).toBe("dest ENOTDIR");
      expect(existsSync(join(mp, "plain"))).toBe(true);
      expect(existsSync(join(mp, "outer", "inner"))).toBe(true);
      expect(await stage(spawner.destroy(join(mp, "outer"), "inner"))).toBe("ok");
      expect(await stage(spawner.destroy(mp, "outer"))).toBe("ok");
      expect(existsSync(join(mp, "outer"))).toBe(false);
    } finally {
      await pool.cleanup();
    }
  }, 60_000);

  it("refuses malformed snapshot limits, quota and destroy requests in C, touching nothing", async () => {
    // raw frames, past the TypeScript encoder's own checks
    const child = spawn(spawnerPath(), [], { stdio: ["pipe", "pipe", "inherit"] });
    const lines: string[] = [];
    let buffered = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => {
      buffered += d;
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        lines.push(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    const send = (words: string[]) => {
      const body = Buffer.from(words.map((w) => `${w}\0`).join(""));
      const head = Buffer.alloc(4);
      head.writeUInt32LE(body.length);
      child.stdin.write(Buffer.concat([head, body]));
    };
    const snap = ["s/", `d${dir}`];
    send(["1", "snap", ...snap, "nx", "q0"]);
    send(["2", "snap", ...snap, "nx", "q-5"]);
    send(["3", "snap", ...snap, "nx", "q12M"]);
    send(["4", "snap", ...snap, "nx", "q99999999999999999999"]);
    send(["5", "snap", ...snap, "n.."]);
    send(["6", "squota"]);
    send(["7", "squota", "p/", "p/tmp"]);
    send(["8", "squota", "x/"]);
    send(["9", "limit", "p/"]);
    send(["10", "destroy", `d${dir}`, "n.."]);
    send(["11", "destroy", `d${dir}`]);
    send(["12", "destroy", `d${dir}`, "nx", "q1"]);
    try {
      for (let i = 0; i < 100 && lines.length < 12; i++) await new Promise((r) => setTimeout(r, 20));
      expect(lines).toEqual(
        ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"].map((id) => `${id} err parse 22`),
      );
      expect(existsSync(join(dir, "x"))).toBe(false);
    } finally {
      child.stdin.end();
      await new Promise((r) => child.once("exit", r));
    }
  });
});
