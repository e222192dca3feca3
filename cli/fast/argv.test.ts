import { describe, expect, it } from "vitest";
import { NAME_PATTERN } from "../../common/names.js";
import { FAST_NAME_PATTERN, fastPlan } from "./argv.js";

describe("the argv shapes the fast entry serves", () => {
  it("serves version and flagless env exec", () => {
    expect(fastPlan(["version"], {})).toEqual({ kind: "version", json: false });
    expect(fastPlan(["version", "-o", "json"], {})).toEqual({ kind: "version", json: true });
    expect(fastPlan(["version", "--output=text"], {})).toEqual({ kind: "version", json: false });
    expect(fastPlan(["env", "exec", "demo", "--", "sh", "-c", "x"], {})).toEqual({
      kind: "exec",
      env: "demo",
      command: ["sh", "-c", "x"],
    });
  });

  it("leaves everything else to the full CLI", () => {
    for (const args of [
      ["version", "--client"],
      ["version", "-o", "yaml"],
      ["version", "extra"],
      ["--context", "x", "version"],
      ["env", "exec", "demo", "true"],
      ["env", "exec", "-i", "demo", "--", "cat"],
      ["env", "exec", "demo", "-t", "--", "sh"],
      ["env", "exec", "demo", "--"],
      ["env", "exec", "Bad_Name", "--", "true"],
      ["env", "exec", "--help"],
      ["env", "ls"],
      [],
    ]) {
      expect(fastPlan(args, {}), args.join(" ")).toBeUndefined();
    }
    expect(fastPlan(["version"], { PROTOCTL_DEBUG: "1" })).toBeUndefined();
  });

  it("uses the naming rule of common/names.ts", () => {
    expect(FAST_NAME_PATTERN.source).toBe(NAME_PATTERN.source);
    expect(FAST_NAME_PATTERN.flags).toBe(NAME_PATTERN.flags);
  });
});
