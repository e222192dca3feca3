import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
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
});
