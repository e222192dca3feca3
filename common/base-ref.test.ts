import { describe, expect, it } from "vitest";
import { baseRefOf, compareBaseRefs, formatBaseRef, parseBaseRef } from "./base-ref.js";
import { Code, ProtoctlError } from "./errors.js";

describe("BaseRef", () => {
  it("formats and parses back", () => {
    expect(formatBaseRef("debian", 12)).toBe("debian@12");
    expect(baseRefOf({ base: "web-1", version: 3 })).toBe("web-1@3");
    expect(parseBaseRef("debian@12")).toEqual({ base: "debian", version: 12 });
    expect(parseBaseRef(formatBaseRef("a-b", 999_999_999))).toEqual({ base: "a-b", version: 999_999_999 });
  });

  it.each([
    "debian",
    "debian@",
    "debian@0",
    "debian@01",
    "debian@-1",
    "debian@1.5",
    "@3",
    "Deb@1",
    "a@b@1",
    "x@1e3",
  ])("refuses %j with INVALID_ARGUMENT", (text) => {
    let err: unknown;
    try {
      parseBaseRef(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtoctlError);
    expect((err as ProtoctlError).code).toBe(Code.INVALID_ARGUMENT);
  });

  it("orders by name, then version as a number", () => {
    const refs = ["web@10", "api@2", "web@9", "api@10"].map(parseBaseRef);
    expect(refs.sort(compareBaseRefs).map(baseRefOf)).toEqual(["api@2", "api@10", "web@9", "web@10"]);
  });
});
