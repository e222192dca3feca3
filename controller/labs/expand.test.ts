import { describe, expect, it } from "vitest";
import { expandMachineName, hasRange } from "./expand.js";

const names = (t: string, count?: number) => {
  const r = expandMachineName(t, count);
  if (!r.ok) throw new Error(r.error);
  return r.names;
};

describe("expandMachineName", () => {
  it("keeps a plain name as one machine with index 0", () => {
    expect(names("db")).toEqual([{ name: "db", index: 0 }]);
  });

  it("numbers counted machines from 1", () => {
    expect(names("web", 3)).toEqual([
      { name: "web-1", index: 1 },
      { name: "web-2", index: 2 },
      { name: "web-3", index: 3 },
    ]);
    expect(names("web", 1)).toEqual([{ name: "web-1", index: 1 }]);
  });

  it("expands a range anywhere in the name, with bash's zero padding", () => {
    expect(names("web-{1..3}").map((n) => n.name)).toEqual(["web-1", "web-2", "web-3"]);
    expect(names("r{2..3}-edge").map((n) => n.name)).toEqual(["r2-edge", "r3-edge"]);
    expect(names("node{08..10}").map((n) => n.name)).toEqual(["node08", "node09", "node10"]);
    expect(names("n{5..5}")).toEqual([{ name: "n5", index: 1 }]);
    expect(hasRange("a-{1..2}")).toBe(true);
    expect(hasRange("a-{1,2}")).toBe(false);
  });

  it("refuses what it cannot expand", () => {
    const err = (t: string, c?: number) => {
      const r = expandMachineName(t, c);
      return r.ok ? "" : r.error;
    };
    expect(err("web-{1..3}", 2)).toMatch(/both a name range and a count/);
    expect(err("web-{3..1}")).toMatch(/counts down/);
    expect(err("a{1..2}b{1..2}")).toMatch(/only one/);
    expect(err("a{x}")).toMatch(/braces/);
    expect(err("a-{1..1000}")).toMatch(/more than 512/);
    expect(err("a", 0)).toMatch(/count must be/);
  });
});
