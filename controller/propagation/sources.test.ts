import { describe, expect, it } from "vitest";
import { SourcePicker } from "./sources.js";

describe("SourcePicker", () => {
  it("caps copies at k per holder and copies only from holders; hydrated nodes add slots", () => {
    const p = new SourcePicker(2);
    p.addHolder("o");
    expect(p.acquire("a")).toBe("o");
    expect(p.acquire("b")).toBe("o");
    expect(p.acquire("c")).toBeUndefined(); // origin full
    p.addAttached("a", "o");
    expect(p.acquire("c")).toBeUndefined(); // an attached node does not serve copies
    p.release("o");
    p.addHolder("a"); // a hydrated
    expect(p.acquire("c")).toBe("a"); // least loaded
    expect(p.acquire("d")).toBe("a"); // equal load: by name
    expect(p.acquire("e")).toBe("o");
    expect(p.acquire("f")).toBeUndefined();
  });

  it("lets every target attach lazily at once, holders first, then through attached nodes", () => {
    const p = new SourcePicker(2, 3);
    p.addHolder("o");
    p.addHolder("w");
    // copies are not counted against lazy readers, nor the reverse
    expect(p.acquire("a")).toBe("o");
    expect(p.acquire("b")).toBe("w");
    const lazy = ["a", "b", "c", "d", "e", "f"].map((t) => p.acquire(t, "lazy"));
    expect(lazy).toEqual(["o", "w", "o", "w", "o", "w"]);
    expect(p.acquire("g", "lazy")).toBeUndefined(); // every holder at lazyK, nobody attached yet
    p.addAttached("a", "o");
    expect(p.acquire("g", "lazy")).toBe("a");
    p.release("o", "lazy");
    expect(p.acquire("h", "lazy")).toBe("o"); // a holder again before the attached node
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
    expect(p.acquire("b", "lazy")).toBeUndefined();
    p.addHolder("b"); // b hydrated: now a holder, a may read from it
    expect(p.acquire("a")).toBe("b");
    expect(p.anyUsable("a", "hydrate")).toBe(true);
  });

  it("star with Infinity", () => {
    const p = new SourcePicker(Number.POSITIVE_INFINITY);
    p.addHolder("z");
    for (let i = 0; i < 10; i++) expect(p.acquire(`t${i}`)).toBe("z");
    for (let i = 0; i < 10; i++) expect(p.acquire(`t${i}`, "lazy")).toBe("z");
  });
});
