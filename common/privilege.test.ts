import { describe, expect, it } from "vitest";
import { isolationOf, isolationText, runsPrivileged } from "./privilege.js";

describe("isolationOf", () => {
  it("runs plain envs in a user namespace unless asked", () => {
    expect(isolationOf({ privileged: false, layers: [] })).toBe("user-namespace");
    expect(runsPrivileged({ privileged: false, layers: [] })).toBe(false);
    expect(isolationOf({ privileged: true, layers: [] })).toBe("privileged");
    expect(runsPrivileged({ privileged: true, layers: ["x"] })).toBe(true);
  });
  it("runs layered envs privileged and says why", () => {
    expect(isolationOf({ privileged: false, layers: ["tools"] })).toBe("privileged-layered");
    expect(isolationText("privileged-layered")).toMatch(/overlayfs/);
  });
});
