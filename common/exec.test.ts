import { describe, expect, it } from "vitest";
import { Code } from "./errors.js";
import { CommandError, output, run, spawnProcess, succeeds } from "./exec.js";

describe("run", () => {
  it("passes arguments verbatim, never through a shell", async () => {
    const tricky = "$(echo pwned); `id` && rm -rf / ; 'x' \"y\"";
    expect(await output("printf", ["%s", tricky])).toBe(tricky);
  });

  it("throws a typed CommandError with exit code and stderr", async () => {
    const err = await run("sh", ["-c", "echo oops >&2; exit 7"]).catch((e) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.command).toBe("sh");
    expect(err.args).toEqual(["-c", "echo oops >&2; exit 7"]);
    expect(err.exitCode).toBe(7);
    expect(err.stderr).toContain("oops");
    expect(err.message).toContain("exited with 7");
  });

  it("returns non-zero exits with allowFailure", async () => {
    const r = await run("sh", ["-c", "exit 3"], { allowFailure: true });
    expect(r.exitCode).toBe(3);
  });

  it("feeds input and honours the timeout", async () => {
    expect(await output("cat", [], { input: "hello" })).toBe("hello");
    const err = await run("sleep", ["5"], { timeoutMs: 100 }).catch((e) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.timedOut).toBe(true);
  });

  it("stops on abort", async () => {
    const ac = new AbortController();
    const p = run("sleep", ["5"], { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    const t0 = Date.now();
    await expect(p).rejects.toBeInstanceOf(CommandError);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("reports a missing binary", async () => {
    const err = await run("protoctl-no-such-binary", []).catch((e) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.exitCode).toBeUndefined();
    expect(await succeeds("protoctl-no-such-binary", [])).toBe(false);
  });

  it("extends or replaces the environment; an undefined value removes a variable", async () => {
    process.env.PROTOCTL_EXEC_TEST_A = "inherited";
    try {
      const env = async (opts: Parameters<typeof run>[2]) =>
        (await output("/usr/bin/env", [], opts))
          .split("\n")
          .filter((l) => l.startsWith("PROTOCTL_EXEC_TEST_"));
      expect(await env({ env: { PROTOCTL_EXEC_TEST_B: "b" } })).toEqual([
        "PROTOCTL_EXEC_TEST_A=inherited",
        "PROTOCTL_EXEC_TEST_B=b",
      ]);
      expect(await env({ env: { PROTOCTL_EXEC_TEST_A: undefined } })).toEqual([]);
      expect(await env({ env: { PROTOCTL_EXEC_TEST_B: "b" }, extendEnv: false })).toEqual([
        "PROTOCTL_EXEC_TEST_B=b",
      ]);
    } finally {
      delete process.env.PROTOCTL_EXEC_TEST_A;
    }
  });

  it("a command killed by a signal is a failure even with allowFailure", async () => {
    const err = await run("sh", ["-c", "kill -TERM $$"], { allowFailure: true }).catch((e) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err.signal).toBe("SIGTERM");
    expect(err.message).toContain("was killed by SIGTERM");
  });

  it("a command that ignores its input still succeeds", async () => {
    expect((await run("true", [], { input: "x".repeat(1 << 20) })).exitCode).toBe(0);
  });

  it("maps a full filesystem to RESOURCE_EXHAUSTED", () => {
    const e = new CommandError(
      "cp",
      ["a", "b"],
      1,
      "cp: error writing 'b': No space left on device",
      "",
      undefined,
      false,
    );
    expect(e.noSpace).toBe(true);
    expect(e.toProtoctl("import failed").code).toBe(Code.RESOURCE_EXHAUSTED);
    const other = new CommandError("cp", ["a", "b"], 1, "cp: permission denied", "", undefined, false);
    expect(other.toProtoctl().code).toBe(Code.INTERNAL);
    expect(other.toProtoctl().output).toContain("permission denied");
  });
});

describe("spawnProcess", () => {
  it("starts a long-lived process with execa, loaded on first use", async () => {
    const p = spawnProcess("sh", ["-c", "echo started"]);
    const r = await p;
    expect(r.stdout).toBe("started");
  });
});
