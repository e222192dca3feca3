import { describe, expect, it } from "vitest";
import { ForegroundActivity } from "./foreground.js";

describe("ForegroundActivity", () => {
  it("is busy while work runs, then quiet quietMs after the last end", async () => {
    const a = new ForegroundActivity();
    expect(a.untilQuiet(100)).toBe(0); // never busy: quiet
    const ends: number[] = [];
    a.onEnd(() => ends.push(1));
    const e1 = a.begin();
    const e2 = a.begin();
    expect(a.untilQuiet(100)).toBe(Number.POSITIVE_INFINITY);
    e1();
    e1(); // ends once
    expect(a.untilQuiet(100)).toBe(Number.POSITIVE_INFINITY);
    e2();
    const left = a.untilQuiet(100);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(100);
    expect(a.untilQuiet(100, Date.now() + 200)).toBe(0);
    expect(ends).toHaveLength(2);
    await expect(a.run(async () => a.untilQuiet(1))).resolves.toBe(Number.POSITIVE_INFINITY);
    await expect(a.run(async () => Promise.reject(new Error("x")))).rejects.toThrow("x");
    expect(a.untilQuiet(0)).toBe(0);
  });
});
