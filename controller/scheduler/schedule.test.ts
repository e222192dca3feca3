import { describe, expect, it } from "vitest";
import { GiB, MiB, node, request, SchedulerHarness } from "./harness.js";
import { schedule } from "./schedule.js";
import { freezeView } from "./view.js";

describe("schedule", () => {
  it("spreads envs evenly by default", () => {
    const h = new SchedulerHarness([{ name: "a" }, { name: "b" }, { name: "c" }]);
    for (let i = 0; i < 9; i++) h.run(request(`e${i}`));
    expect(h.placements()).toEqual({ a: 3, b: 3, c: 3 });
  });

  it("binpacks when asked", () => {
    const h = new SchedulerHarness([
      { name: "a", memoryBytes: 4 * GiB },
      { name: "b", memoryBytes: 4 * GiB },
    ]);
    for (let i = 0; i < 4; i++) h.run(request(`e${i}`, { memoryBytes: GiB, strategy: "binpack" }));
    expect(h.placements()).toEqual({ a: 4 });
  });

  it("rejects NotReady, cordoned and draining nodes with reasons", () => {
    const h = new SchedulerHarness([
      { name: "a", ready: false },
      { name: "b", cordoned: true },
      { name: "c", draining: true },
      { name: "d" },
    ]);
    const plan = h.run(request("e"));
    expect(plan.node).toBe("d");
    expect(plan.rejections).toEqual([
      { node: "a", reason: "node is NotReady" },
      { node: "b", reason: "node is cordoned" },
      { node: "c", reason: "node is draining" },
    ]);
  });

  it("accounts memory of envs already placed: a full node makes placement go elsewhere", () => {
    const h = new SchedulerHarness([
      { name: "a", memoryBytes: 2 * GiB, allocatedMemory: 2 * GiB, envs: 2 },
      { name: "b", memoryBytes: 2 * GiB },
    ]);
    expect(h.run(request("e1", { memoryBytes: GiB })).node).toBe("b");
    expect(h.run(request("e2", { memoryBytes: GiB })).node).toBe("b");
    const plan = h.run(request("e3", { memoryBytes: GiB }));
    expect(plan.node).toBeUndefined();
    expect(plan.rejections.map((r) => r.node)).toEqual(["a", "b"]);
    expect(plan.rejections[0]!.reason).toMatch(/insufficient memory: wants 1GiB, 0B unallocated of 2GiB/);
  });

  it("checks pool space against declared disk and reported free space", () => {
    const h = new SchedulerHarness([
      { name: "a", poolSizeBytes: GiB, poolFreeBytes: 100 * MiB },
      { name: "b", poolSizeBytes: GiB, allocatedDisk: 900 * MiB },
      { name: "c", poolSizeBytes: GiB },
    ]);
    const plan = h.run(request("e", { diskBytes: 200 * MiB }));
    expect(plan.node).toBe("c");
    expect(plan.rejections.map((r) => r.node)).toEqual(["a", "b"]);
    expect(plan.rejections[0]!.reason).toMatch(/insufficient pool space/);
  });

  it("matches label selectors", () => {
    const h = new SchedulerHarness([
      { name: "a", labels: { zone: "x" } },
      { name: "b", labels: { zone: "y", gpu: "1" } },
    ]);
    const plan = h.run(request("e", { nodeSelector: { zone: "y", gpu: "1" } }));
    expect(plan.node).toBe("b");
    expect(plan.rejections).toEqual([{ node: "a", reason: "label zone=y not matched (zone=x)" }]);
  });

  it("honours a node pin and explains an unknown one", () => {
    const h = new SchedulerHarness([{ name: "a" }, { name: "b" }]);
    expect(h.run(request("e1", { node: "b" })).node).toBe("b");
    const plan = h.run(request("e2", { node: "zz" }));
    expect(plan.node).toBeUndefined();
    expect(plan.rejections).toContainEqual({ node: "zz", reason: "no such node" });
  });

  it("requires the base version on the node while propagation is off", () => {
    const h = new SchedulerHarness([
      { name: "a", bases: ["debian@1"] },
      { name: "b", bases: ["debian@1", "debian@2"] },
    ]);
    const plan = h.run(request("e", { version: 2 }));
    expect(plan.node).toBe("b");
    expect(plan.rejections[0]!.reason).toMatch(/not on this node \(propagation is not enabled\)/);
    const none = h.run(request("f", { version: 3 }));
    expect(none.node).toBeUndefined();
    expect(none.rejections[0]!.reason).toBe("base debian@3 is not held by any ready node");
  });

  it("with propagation, prefers holders but may use a node that can receive the version", () => {
    const h = new SchedulerHarness(
      [
        { name: "a", bases: [], envs: 0 },
        { name: "b", bases: ["debian@1"], envs: 5 },
      ],
      { propagation: true },
    );
    const p1 = h.run(request("e1"));
    expect(p1.node).toBe("b");
    expect(p1.needsPropagation).toBe(false);
    const h2 = new SchedulerHarness(
      [
        { name: "a", bases: [] },
        { name: "b", bases: ["debian@1"], cordoned: true },
      ],
      { propagation: true },
    );
    // a cordoned node is still ready: it can be the source of a propagation
    const p2 = h2.run(request("e2"));
    expect(p2.node).toBe("a");
    expect(p2.needsPropagation).toBe(true);
  });

  it("with propagation, spreads a group to nodes lacking the version rather than doubling up on its holder", () => {
    const h = new SchedulerHarness(
      [
        { name: "a", bases: ["debian@1"] },
        { name: "b", bases: [] },
        { name: "c", bases: [], envs: 3 },
      ],
      { propagation: true },
    );
    const plans = [0, 1, 2].map((i) => h.run(request(`lab-${i}`, { group: "lab", strategy: "binpack" })));
    expect(plans.map((p) => [p.node, p.needsPropagation])).toEqual([
      ["a", false],
      ["c", true],
      ["b", true],
    ]);
    // without a group the holder still wins
    expect(h.run(request("single")).node).toBe("a");
  });

  it("spreads a group across nodes (anti-affinity) even when binpacking", () => {
    const h = new SchedulerHarness([{ name: "a" }, { name: "b" }, { name: "c" }]);
    for (let i = 0; i < 3; i++) h.run(request(`lab-${i}`, { group: "lab", strategy: "binpack" }));
    expect(h.placements()).toEqual({ a: 1, b: 1, c: 1 });
  });

  it("is deterministic and leaves the view untouched", () => {
    const view = freezeView([node({ name: "a" }), node({ name: "b", envs: 1 })]);
    const r = request("e");
    const p1 = schedule(view, r);
    const p2 = schedule(view, r);
    expect(p1).toEqual(p2);
    expect(p1.node).toBe("a");
    expect(p1.scores.map((s) => s.node)).toEqual(["a", "b"]);
    expect(view.nodes[0]!.allocated.envs).toBe(0);
  });

  it("excludes nodes the env was lost on", () => {
    const h = new SchedulerHarness([{ name: "a" }, { name: "b" }]);
    expect(h.run(request("e", { exclude: ["a"] })).node).toBe("b");
  });

  it("avoids nodes it is told to, with the reason given", () => {
    const h = new SchedulerHarness([{ name: "a" }, { name: "b", envs: 3 }]);
    const plan = h.run(request("e", { avoid: { a: "pushing the base here failed" } }));
    expect(plan.node).toBe("b");
    expect(plan.rejections).toEqual([{ node: "a", reason: "pushing the base here failed" }]);
  });

  it("a node named like an Object property is a node like any other", () => {
    // "constructor" is a valid node name; looked up in a plain object it found Object itself
    const h = new SchedulerHarness([{ name: "constructor" }, { name: "b", envs: 3 }]);
    expect(h.run(request("e", { avoid: {} })).node).toBe("constructor");
    expect(h.run(request("f", { avoid: { b: "pushing the base here failed" } })).node).toBe("constructor");
    // an empty reason avoids nothing
    expect(h.run(request("h", { avoid: { constructor: "" } })).node).toBe("constructor");
    const plan = h.run(request("g", { nodeSelector: { constructor: "x" } }));
    expect(plan.node).toBeUndefined();
    expect(plan.rejections).toContainEqual({
      node: "constructor",
      reason: "label constructor=x not matched (constructor=<unset>)",
    });
  });

  it("asks whether another node holds the version only when a node lacks it", () => {
    const h = new SchedulerHarness([
      { name: "a", bases: ["debian@2"] },
      { name: "b", bases: ["debian@1"], ready: false },
    ]);
    // b is NotReady: no ready node holds debian@1, so a cannot receive it
    expect(h.run(request("e")).rejections).toContainEqual({
      node: "a",
      reason: "base debian@1 is not held by any ready node",
    });
  });

  it("lists the ten best scores, best first", () => {
    const h = new SchedulerHarness(
      Array.from({ length: 20 }, (_, i) => ({ name: `n${String(i).padStart(2, "0")}`, envs: i })),
    );
    const plan = h.run(request("e"));
    expect(plan.node).toBe("n00");
    expect(plan.scores.map((s) => s.node)).toEqual(
      Array.from({ length: 10 }, (_, i) => `n${String(i).padStart(2, "0")}`),
    );
    expect(plan.scores[0]!.score).toBeGreaterThan(plan.scores[9]!.score);
  });

  it("ranks by each node's score parts: a listed score is exactly the sum of its parts", () => {
    // every term in play: base held or not, memory and env load, anti-affinity, under both strategies
    const nodes = Array.from({ length: 14 }, (_, i) =>
      node({
        name: `n${String(i).padStart(2, "0")}`,
        envs: (i * 7) % 5,
        allocatedMemory: ((i * 3) % 4) * GiB,
        bases: i % 3 === 0 ? ["debian@2"] : ["debian@1"],
        groups: i % 4 === 0 ? { lab: 1 + (i % 2) } : {},
      }),
    );
    const view = freezeView(nodes, true);
    for (const strategy of ["spread", "binpack"] as const) {
      const plan = schedule(view, request("e", { memoryBytes: 512 * MiB, group: "lab", strategy }));
      expect(plan.scores).toHaveLength(10);
      for (const s of plan.scores) {
        const p = s.parts as { baseLocal: number; fit: number; antiAffinity: number };
        expect(s.score).toBe(p.baseLocal + p.fit + p.antiAffinity);
      }
      for (let i = 1; i < plan.scores.length; i++) {
        const [a, b] = [plan.scores[i - 1]!, plan.scores[i]!];
        expect(a.score > b.score || (a.score === b.score && a.node < b.node)).toBe(true);
      }
      expect(plan.node).toBe(plan.scores[0]!.node);
    }
  });

  it("breaks ties by name, whatever order the nodes come in", () => {
    const names = ["m", "c", "q", "a", "x", "k", "b", "z", "f", "d", "y", "e"];
    const busy = node({ name: "0-busy", envs: 5 });
    const view = freezeView([busy, ...names.map((name) => node({ name }))]);
    const plan = schedule(view, request("e"));
    expect(plan.node).toBe("a");
    expect(plan.scores.map((s) => s.node)).toEqual([...names].sort().slice(0, 10));
  });
});
