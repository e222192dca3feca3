import { expect, it } from "vitest";
import { durationSeconds, formatSeconds } from "./duration.js";

it("parses durations with units and bare seconds", () => {
  expect(durationSeconds("90s")).toBe(90);
  expect(durationSeconds("30m")).toBe(1800);
  expect(durationSeconds(" 2h ")).toBe(7200);
  expect(durationSeconds("1d")).toBe(86400);
  expect(durationSeconds("3600")).toBe(3600);
  expect(durationSeconds(45)).toBe(45);
});

it("refuses zero, negatives, fractions and junk", () => {
  for (const bad of ["0", "0s", "-5m", "1.5h", "5w", "", "h", "1e3", "99999999999999s"]) {
    expect(durationSeconds(bad), bad).toBeUndefined();
  }
  expect(durationSeconds(0)).toBeUndefined();
  expect(durationSeconds(1.5)).toBeUndefined();
});

it("formats time left compactly", () => {
  expect(formatSeconds(-3)).toBe("0s");
  expect(formatSeconds(59)).toBe("59s");
  expect(formatSeconds(60)).toBe("1m");
  expect(formatSeconds(125)).toBe("2m5s");
  expect(formatSeconds(3 * 3600 + 120)).toBe("3h2m");
  expect(formatSeconds(2 * 86400 + 3600)).toBe("2d1h");
});
