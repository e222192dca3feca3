import { describe, expect, it } from "vitest";
import { Code, failedPrecondition, notFound, ProtoctlError } from "../common/errors.js";
import { EXIT_CODES_HELP, ExitCode, ExitRequest, exitCodeForGrpc, reportFor } from "./exit-codes.js";

describe("exit codes", () => {
  it("maps every gRPC code to a documented status", () => {
    const expected: Record<number, number> = {
      [Code.OK]: 0,
      [Code.INVALID_ARGUMENT]: 2,
      [Code.OUT_OF_RANGE]: 2,
      [Code.NOT_FOUND]: 3,
      [Code.ALREADY_EXISTS]: 4,
      [Code.ABORTED]: 4,
      [Code.FAILED_PRECONDITION]: 5,
      [Code.RESOURCE_EXHAUSTED]: 5,
      [Code.UNAVAILABLE]: 6,
      [Code.DEADLINE_EXCEEDED]: 6,
      [Code.UNAUTHENTICATED]: 7,
      [Code.PERMISSION_DENIED]: 7,
      [Code.CANCELLED]: 130,
      [Code.INTERNAL]: 1,
      [Code.UNKNOWN]: 1,
      [Code.UNIMPLEMENTED]: 1,
      [Code.DATA_LOSS]: 1,
    };
    for (const [code, exit] of Object.entries(expected)) expect(exitCodeForGrpc(Number(code))).toBe(exit);
    for (const v of new Set(Object.values(ExitCode)))
      expect(EXIT_CODES_HELP).toMatch(new RegExp(`^  ${v}\\s`, "m"));
  });

  it("prints one sentence and the hint, no stack", () => {
    const r = reportFor(notFound('no env named "x"', { hint: "see `protoctl env ls`" }));
    expect(r.exitCode).toBe(3);
    expect(r.lines).toEqual(['error: no env named "x"', "hint: see `protoctl env ls`"]);
  });

  it("adds the failed command's output tail", () => {
    const r = reportFor(new ProtoctlError(Code.INTERNAL, "recipe failed", { output: "a\nb\n" }));
    expect(r.exitCode).toBe(1);
    expect(r.lines).toEqual(["error: recipe failed", "output (last lines):", "  a", "  b"]);
  });

  it("a recipe or base update that failed on a node exits 1, other preconditions 5", () => {
    for (const reason of ["RECIPE_FAILED", "UPDATE_FAILED"]) {
      expect(reportFor(failedPrecondition("recipe of x failed (exit 3)", { reason })).exitCode).toBe(1);
    }
    expect(reportFor(failedPrecondition("node cordoned", { reason: "NODE_CORDONED" })).exitCode).toBe(5);
  });

  it("shows the stack only in debug mode", () => {
    const plain = reportFor(new Error("boom"));
    expect(plain.lines.join("\n")).not.toMatch(/\n\s+at /);
    const debug = reportFor(new Error("boom"), true);
    expect(debug.lines.join("\n")).toMatch(/\n\s+at /);
  });

  it("commander errors are usage errors; help and version are success", () => {
    const err = (code: string) => Object.assign(new Error("x"), { code, exitCode: 1 });
    expect(reportFor(err("commander.unknownOption")).exitCode).toBe(2);
    expect(reportFor(err("commander.missingArgument")).exitCode).toBe(2);
    expect(reportFor(err("commander.help")).exitCode).toBe(2);
    expect(reportFor(err("commander.helpDisplayed")).exitCode).toBe(0);
    expect(reportFor(err("commander.version")).exitCode).toBe(0);
  });

  it("ExitRequest passes its status through silently", () => {
    expect(reportFor(new ExitRequest(42))).toEqual({ exitCode: 42, lines: [] });
  });
});
