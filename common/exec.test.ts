import { describe, expect, it } from "vitest";
import { Code } from "./errors.js";
import { CommandError, output, run, succeeds } from "./exec.js";

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
