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

  it("serves `env create NAME --base REF` and `env rm NAME`", () => {
    expect(fastPlan(["env", "create", "e1", "--base", "busybox"], {})).toEqual({
      kind: "create",
      env: "e1",
      base: "busybox",
      version: 0,
    });
    expect(fastPlan(["env", "create", "e1", "--base=deb@12"], {})).toEqual({
      kind: "create",
      env: "e1",
      base: "deb",
      version: 12,
    });
    expect(fastPlan(["env", "rm", "e1"], {})).toEqual({ kind: "rm", env: "e1" });
    expect(fastPlan(["env", "delete", "e1"], {})).toEqual({ kind: "rm", env: "e1" });
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
      ["env", "create", "e1"],
      ["env", "create", "e1", "--base"],
      ["env", "create", "--base", "b", "e1"],
      ["env", "create", "e1", "--base", "b", "--node", "n1"],
      ["env", "create", "e1", "--base", "b", "--no-wait"],
      ["env", "create", "e1", "--base", "b@0"],
      ["env", "create", "e1", "--base", "b@01"],
      ["env", "create", "e1", "--base", "b@"],
      ["env", "create", "e1", "--base", "B"],
      ["env", "create", "e1", "--base", "b@1@2"],
      ["env", "create", "E1", "--base", "b"],
      ["env", "create", "e1", "--base=", "b"],
      ["env", "rm", "e1", "e2"],
      ["env", "rm", "--no-wait", "e1"],
      ["env", "rm", "Bad"],
      ["env", "rm"],
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
