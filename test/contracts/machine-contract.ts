/**
 * What every MachineDriver must do, run against the nspawn driver
 * (machine-contract.int.test.ts) and the in-memory fake
 * (test/unit/fakes/fake-machines.test.ts), so the fake cannot drift from the
 * real one. Each test removes the machines it made.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { drainAfterExit } from "../../agent/host/machines/exec-session.js";
import type { ExecSession, MachineDriver, MachineSpec } from "../../agent/host/machines/machine-driver.js";
import { Code } from "../../common/errors.js";
import { expectCode } from "./expect-code.js";

export interface MachineBed {
  driver: MachineDriver;
  /** A fresh root (a busybox tree for the real driver) for env `name`. */
  rootDir(name: string): Promise<string>;
  cleanup(): Promise<void>;
}

async function output(s: ExecSession): Promise<{ stdout: string; code: number }> {
  let stdout = "";
  s.stdout.on("data", (b: Buffer) => {
    stdout += b.toString();
  });
  s.stderr?.resume();
  s.stdin.end();
  const code = await drainAfterExit(s);
  return { stdout, code };
}

export function machineContract(kind: string, make: () => Promise<MachineBed>): void {
  describe(`MachineDriver contract: ${kind}`, () => {
    let bed: MachineBed;
    const spec = async (name: string, over: Partial<MachineSpec> = {}): Promise<MachineSpec> => ({
      name,
      rootDir: await bed.rootDir(name),
      boot: false,
      limits: {},
      network: { mode: "none" },
      env: {},
      ...over,
    });
    const remove = async (name: string) => {
      if ((await bed.driver.state(name)).running)
        await bed.driver.stop(name, { timeoutMs: 2000, force: true });
      await bed.driver.cleanup(name);
    };

    beforeAll(async () => {
      bed = await make();
    });
    afterAll(async () => {
      for (const m of (await bed?.driver.list()) ?? []) await remove(m.name).catch(() => undefined);
      await bed?.cleanup();
    });

    it("starts a machine, reports it running, and a second start changes nothing", async () => {
      const st = await bed.driver.start(await spec("ct-a"));
      expect(st).toMatchObject({ name: "ct-a", running: true });
      expect(st.leaderPid).toBeGreaterThan(0);
      expect(await bed.driver.state("ct-a")).toMatchObject({ running: true, leaderPid: st.leaderPid });
      expect((await bed.driver.list()).map((m) => m.name)).toContain("ct-a");
      const again = await bed.driver.start(await spec("ct-a"));
      expect(again.leaderPid).toBe(st.leaderPid);
      const stopped = await bed.driver.stop("ct-a", { timeoutMs: 2000 });
      expect(stopped.running).toBe(false);
      expect((await bed.driver.state("ct-a")).running).toBe(false);
      await bed.driver.cleanup("ct-a");
      expect((await bed.driver.list()).map((m) => m.name)).not.toContain("ct-a");
    });

    it("runs commands with their output and exit code", async () => {
      await bed.driver.start(await spec("ct-b", { env: { GREETING: "hi" } }));
      const echo = await output(
        await bed.driver.exec({ name: "ct-b", command: ["echo", "hello"], tty: false }),
      );
      expect(echo).toEqual({ stdout: "hello\n", code: 0 });
      const exit3 = await output(
        await bed.driver.exec({ name: "ct-b", command: ["/bin/sh", "-c", "exit 3"], tty: false }),
      );
      expect(exit3.code).toBe(3);
      expect(
        (await output(await bed.driver.exec({ name: "ct-b", command: ["false"], tty: false }))).code,
      ).toBe(1);
      await expectCode(bed.driver.exec({ name: "ct-b", command: [], tty: false }), Code.INVALID_ARGUMENT);
      await expectCode(
        bed.driver.exec({ name: "ct-b", command: ["true"], tty: false, env: { "BAD-KEY": "x" } }),
        Code.INVALID_ARGUMENT,
      );
      await expectCode(
        bed.driver.exec({ name: "ct-b", command: ["true"], tty: false, workdir: "relative" }),
        Code.INVALID_ARGUMENT,
      );
      await remove("ct-b");
    });

    it("refuses an exec in a machine that is not running", async () => {
      await expectCode(
        bed.driver.exec({ name: "ct-none", command: ["true"], tty: false }),
        Code.FAILED_PRECONDITION,
        "ENV_NOT_RUNNING",
      );
      await bed.driver.start(await spec("ct-c"));
      await bed.driver.stop("ct-c", { timeoutMs: 0, force: true });
      await expectCode(
        bed.driver.exec({ name: "ct-c", command: ["true"], tty: false }),
        Code.FAILED_PRECONDITION,
        "ENV_NOT_RUNNING",
      );
      await bed.driver.cleanup("ct-c");
    });

    it("refuses bad input before making anything", async () => {
      await expectCode(bed.driver.start(await spec("Bad_Name")), Code.INVALID_ARGUMENT, "INVALID_NAME");
      await expectCode(bed.driver.start(await spec("ct-d", { env: { "1X": "y" } })), Code.INVALID_ARGUMENT);
      await expectCode(
        bed.driver.start(
          await spec("ct-d", {
            network: { mode: "none", ports: [{ protocol: "tcp", hostPort: 18080, containerPort: 80 }] },
          }),
        ),
        Code.INVALID_ARGUMENT,
        "PORTS_NEED_NETWORK",
      );
      expect((await bed.driver.list()).map((m) => m.name)).not.toContain("ct-d");
      expect((await bed.driver.state("ct-d")).running).toBe(false);
    });

    it("fails a start on a root that does not exist, and keeps nothing of it", async () => {
      await expectCode(
        bed.driver.start(await spec("ct-g", { rootDir: "/nonexistent/protoctl-contract-root" })),
        Code.FAILED_PRECONDITION,
        "MACHINE_START_FAILED",
      );
      expect((await bed.driver.state("ct-g")).running).toBe(false);
      expect((await bed.driver.list()).map((m) => m.name)).not.toContain("ct-g");
    });

    it("answers for machines it does not know: not running, stop NOT_FOUND, cleanup a no-op", async () => {
      expect(await bed.driver.state("ct-unknown")).toMatchObject({ name: "ct-unknown", running: false });
      await expectCode(bed.driver.stop("ct-unknown", { timeoutMs: 0 }), Code.NOT_FOUND, "MACHINE_NOT_FOUND");
      await bed.driver.cleanup("ct-unknown");
    });

    it("refuses to clean up a running machine", async () => {
      await bed.driver.start(await spec("ct-e"));
      await expectCode(bed.driver.cleanup("ct-e"), Code.FAILED_PRECONDITION, "MACHINE_RUNNING");
      expect((await bed.driver.state("ct-e")).running).toBe(true);
      await remove("ct-e");
    });

    it("undoes a prewarm on cleanup when no start followed", async () => {
      bed.driver.prewarm?.("ct-f", {});
      await bed.driver.cleanup("ct-f");
      expect((await bed.driver.list()).map((m) => m.name)).not.toContain("ct-f");
      // and a prewarmed env starts as any other
      bed.driver.prewarm?.("ct-f", {});
      expect((await bed.driver.start(await spec("ct-f"))).running).toBe(true);
      await remove("ct-f");
    });
  });
}
