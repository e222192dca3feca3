import { describe, expect, it } from "vitest";
import { kernelDropsEmptyQgroups } from "./disk-limit.js";

describe("kernelDropsEmptyQgroups", () => {
  it("is true from 6.10 on, false before and for a release it cannot read", () => {
    expect(kernelDropsEmptyQgroups("6.18.0-protoctl")).toBe(true);
    expect(kernelDropsEmptyQgroups("6.10.1")).toBe(true);
    expect(kernelDropsEmptyQgroups("7.0.0")).toBe(true);
    expect(kernelDropsEmptyQgroups("6.9.12")).toBe(false);
    expect(kernelDropsEmptyQgroups("6.1.0-28-amd64")).toBe(false);
    expect(kernelDropsEmptyQgroups("weird")).toBe(false);
  });
});
