import { describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "./errors.js";
import { isValidName, noSuchObject, parseVersionRef, validateName } from "./names.js";

function codeOf(fn: () => unknown): Code | undefined {
  try {
    fn();
  } catch (err) {
    return (err as ProtoctlError).code;
  }
  return undefined;
}

describe("validateName", () => {
  it.each(["a", "0", "web-1", "debian-bookworm", "a".repeat(63), "x-y-z9"])("accepts %j", (n) => {
    expect(validateName("env", n)).toBe(n);
    expect(isValidName(n)).toBe(true);
  });

  it.each([
    ["empty", ""],
    ["dot-dot", ".."],
    ["slash", "a/b"],
    ["64 characters", "a".repeat(64)],
    ["uppercase", "Web"],
    ["leading dash", "-web"],
    ["space", "a b"],
    ["dot", "a.b"],
    ["newline", "a\n"],
    ["shell", "$(id)"],
    ["unicode", "wéb"],
  ])("rejects %s with INVALID_ARGUMENT", (_label, n) => {
    expect(codeOf(() => validateName("base", n))).toBe(Code.INVALID_ARGUMENT);
    expect(isValidName(n)).toBe(false);
  });

  it("rejects non-strings", () => {
    expect(codeOf(() => validateName("env", undefined))).toBe(Code.INVALID_ARGUMENT);
    expect(codeOf(() => validateName("env", 5))).toBe(Code.INVALID_ARGUMENT);
  });

  it("carries a reason and a hint", () => {
    try {
      validateName("env", "Bad");
      expect.unreachable();
    } catch (err) {
      const e = err as ProtoctlError;
      expect(e).toBeInstanceOf(ProtoctlError);
      expect(e.reason).toBe("INVALID_NAME");
      expect(e.hint).toMatch(/a-z/);
      expect(e.message).toContain('"Bad"');
    }
  });
});

describe("parseVersionRef", () => {
  it("parses name and name@N", () => {
    expect(parseVersionRef("base", "debian")).toEqual({ name: "debian", version: 0 });
    expect(parseVersionRef("base", "debian@12")).toEqual({ name: "debian", version: 12 });
  });

  it.each(["debian@", "debian@0", "debian@-1", "debian@1x", "@3", "Deb@1", "a@b@1"])("rejects %j", (r) => {
    expect(codeOf(() => parseVersionRef("base", r))).toBe(Code.INVALID_ARGUMENT);
  });
});

describe("noSuchObject", () => {
  it("is NOT_FOUND naming the object, its reason, subject and a hint to list them", () => {
    expect(noSuchObject("base", "bb@9", "bb")).toMatchObject({
      code: Code.NOT_FOUND,
      message: "no base named bb@9",
      reason: "BASE_NOT_FOUND",
      subject: "base/bb",
      hint: "see `protoctl base ls`",
    });
    expect(noSuchObject("node", "n9").subject).toBe("node/n9");
  });
});
