import { describe, expect, it } from "vitest";
import { SourcePicker } from "./sources.js";

describe("SourcePicker", () => {
  it("caps each source at k peers and grows a tree from attached nodes", () => {
    const p = new SourcePicker(2);
    p.addHolder("o");
    expect(p.acquire("a")).toBe("o");
    expect(p.acquire("b")).toBe("o");
    expect(p.acquire("c")).toBeUndefined(); // origin full
    p.addAttached("a", "o");
    p.addAttached("b", "o");
    expect(p.acquire("c")).toBe("a");
    expect(p.acquire("d")).toBe("b");
    expect(p.acquire("e")).toBe("a");
    expect(p.acquire("f")).toBe("b");
    expect(p.acquire("g")).toBeUndefined();
    p.release("o");
    expect(p.acquire("g")).toBe("o");
  });

  it("never gives a node its own descendant, nor a source behind a dead one", () => {
    const p = new SourcePicker(5);
    p.addHolder("o");
    p.addAttached("a", "o");
    p.addAttached("b", "a");
    expect(p.usable("b", "a")).toBe(false);
    expect(p.usable("a", "b")).toBe(true);
    p.markDead("o");
    expect(p.anyUsable("a")).toBe(false);
    expect(p.acquire("b")).toBeUndefined();
    p.addHolder("b"); // b hydrated: now a holder, a may read from it
    expect(p.acquire("a")).toBe("b");
  });

  it("prefers holders at equal load; star with Infinity", () => {
    const p = new SourcePicker(Number.POSITIVE_INFINITY);
    p.addHolder("z");
    p.addAttached("a", "z");
    expect(p.acquire("x")).toBe("z");
    for (let i = 0; i < 10; i++) expect(p.acquire(`t${i}`)).toBeDefined();
  });
});
