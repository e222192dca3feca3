import { describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import { BaseVersion, BaseVersionState } from "../../proto/gen/protoctl/v1/types.js";
import {
  chooseOrigin,
  chooseTransport,
  type Holdings,
  maxClients,
  pushError,
  resolveTargets,
  splitTargets,
} from "./plan.js";

const {
  BASE_VERSION_STATE_LOCAL: L,
  BASE_VERSION_STATE_HYDRATED: H,
  BASE_VERSION_STATE_ATTACHED: A,
} = BaseVersionState;

/** Plan harness: nodes as "name: ready? labels, versions {N: state}, image sums {N: sum}". */
function cluster(
  nodes: Record<
    string,
    {
      ready?: boolean;
      labels?: Record<string, string>;
      v?: Record<number, BaseVersionState>;
      sum?: Record<number, string>;
    }
  >,
): Holdings {
  return new Map(
    Object.entries(nodes).map(([n, d]) => [
      n,
      {
        ready: d.ready ?? true,
        labels: d.labels ?? {},
        versions: new Map(Object.entries(d.v ?? {}).map(([k, s]) => [Number(k), s])),
        imageSum: new Map(Object.entries(d.sum ?? {}).map(([k, s]) => [Number(k), s])),
      },
    ]),
  );
}

const seal = (origin: string, checksum = "") =>
  BaseVersion.fromPartial({ base: "b", version: 2, origin, checksum });

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    const e = err as ProtoctlError;
    return { code: e.code, reason: e.reason };
  }
  return undefined;
};

describe("resolveTargets", () => {
  const h = cluster({
    a: { labels: { zone: "x" } },
    b: { labels: { zone: "y" } },
    c: { ready: false, labels: { zone: "x" } },
  });
  it("takes the named nodes once each, all Ready", () => {
    expect(resolveTargets(h, ["b", "a", "b"], {})).toEqual(["b", "a"]);
  });
  it("refuses a named node that is not Ready, and a bad name", () => {
    expect(codeOf(() => resolveTargets(h, ["a", "c"], {}))).toEqual({
      code: Code.UNAVAILABLE,
      reason: "NODE_NOT_READY",
    });
    expect(codeOf(() => resolveTargets(h, ["A/../x"], {}))?.code).toBe(Code.INVALID_ARGUMENT);
  });
  it("a node the cluster does not know is NOT_FOUND, not unreachable", () => {
    expect(codeOf(() => resolveTargets(h, ["a", "nope"], {}))).toEqual({
      code: Code.NOT_FOUND,
      reason: "NODE_NOT_FOUND",
    });
  });
  it("selects Ready nodes by label, all Ready nodes without one", () => {
    expect(resolveTargets(h, [], { zone: "x" })).toEqual(["a"]);
    expect(resolveTargets(h, [], {})).toEqual(["a", "b"]);
    expect(codeOf(() => resolveTargets(h, [], { zone: "z" }))).toEqual({
      code: Code.FAILED_PRECONDITION,
      reason: "NO_TARGETS",
    });
  });
});

describe("chooseOrigin", () => {
  it("is the seal's origin holding the version locally", () => {
    const h = cluster({ a: { v: { 2: L } }, o: { v: { 2: L } } });
    expect(chooseOrigin(h, "b@2", 2, seal("o"), undefined)).toBe("o");
    expect(chooseOrigin(h, "b@2", 2, seal(""), undefined)).toBe("a");
  });
  it("falls back to a node hydrated from the sealed image, never one with another image", () => {
    const h = cluster({
      o: { ready: false, v: { 2: L } },
      x: { v: { 2: H }, sum: { 2: "s2" } },
      y: { v: { 2: H }, sum: { 2: "s1" } },
    });
    expect(chooseOrigin(h, "b@2", 2, seal("o", "s1"), undefined)).toBe("y");
    // no checksum on the seal yet: the seed record's names the image
    expect(chooseOrigin(h, "b@2", 2, seal("o"), "s2")).toBe("x");
  });
  it("waits (UNAVAILABLE) while the only holder is not Ready; FAILED_PRECONDITION when none holds it", () => {
    const down = cluster({ o: { ready: false, v: { 2: L } }, t: {} });
    expect(codeOf(() => chooseOrigin(down, "b@2", 2, seal("o"), undefined))).toEqual({
      code: Code.UNAVAILABLE,
      reason: "NO_ORIGIN",
    });
    const none = cluster({ o: { v: { 1: L } }, t: {} });
    expect(codeOf(() => chooseOrigin(none, "b@2", 2, seal("o"), undefined))).toEqual({
      code: Code.FAILED_PRECONDITION,
      reason: "NO_ORIGIN",
    });
  });
});

describe("splitTargets", () => {
  const h = cluster({ n: {}, at: { v: { 2: A } }, hy: { v: { 2: H } }, lo: { v: { 2: L } } });
  it("pushes to nodes lacking it; reports attached and local ones as they are", () => {
    expect(splitTargets(h, ["n", "at", "hy", "lo"], 2, false)).toEqual({
      todo: ["n"],
      attached: ["at"],
      local: ["hy", "lo"],
    });
  });
  it("with waitLocal, an attached node is pushed to the end", () => {
    expect(splitTargets(h, ["n", "at", "hy"], 2, true)).toEqual({
      todo: ["n", "at"],
      attached: [],
      local: ["hy"],
    });
  });
});

describe("chooseTransport", () => {
  const v = (m: Record<number, BaseVersionState>) =>
    new Map(Object.entries(m).map(([k, s]) => [Number(k), s]));
  it("sends a delta unasked only when both pools hold the parent", () => {
    expect(chooseTransport("", 2, v({ 1: L }), v({ 1: L, 2: L }), false)).toEqual({
      parentFirst: false,
      delta: true,
      parentVersion: 1,
    });
    expect(chooseTransport("", 2, v({ 1: H }), v({ 1: L, 2: L }), false).delta).toBe(false);
    expect(chooseTransport("", 2, v({}), v({ 1: L, 2: L }), false).delta).toBe(false);
    expect(chooseTransport("seed", 2, v({ 1: L }), v({ 1: L, 2: L }), false).delta).toBe(false);
  });
  it("asked for: onto a hydrated parent directly, onto an attached one after its hydration", () => {
    expect(chooseTransport("delta", 2, v({ 1: H }), v({ 1: L, 2: L }), false)).toEqual({
      parentFirst: false,
      delta: true,
      parentVersion: 1,
    });
    expect(chooseTransport("delta", 2, v({ 1: A }), v({ 1: L, 2: L }), false).parentFirst).toBe(true);
    // attached by a push the controller knows of, before the heartbeat says so
    expect(chooseTransport("delta", 2, v({}), v({ 1: L, 2: L }), true)).toEqual({
      parentFirst: true,
      delta: true,
      parentVersion: 1,
    });
    // no parent anywhere: a full send
    expect(chooseTransport("delta", 2, v({}), v({ 2: L }), false)).toEqual({
      parentFirst: false,
      delta: true,
      parentVersion: 0,
    });
  });
});

describe("pushError and maxClients", () => {
  it("keeps the failures' code when they agree, ABORTED when not", () => {
    const full = new ProtoctlError(Code.RESOURCE_EXHAUSTED, "full", { reason: "NO_SPACE" });
    const gone = new ProtoctlError(Code.UNAVAILABLE, "gone", { reason: "NO_SOURCE" });
    const one = pushError("b@2", [{ node: "a", err: full }]);
    expect(one).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "NO_SPACE", subject: "base/b@2" });
    expect(one.message).toBe("push of b@2 failed on a (full)");
    expect(
      pushError("b@2", [
        { node: "a", err: full },
        { node: "c", err: gone },
      ]).code,
    ).toBe(Code.ABORTED);
  });
  it("admits a lazy reader per target and the copies, bounded by the fan-out", () => {
    expect(maxClients(2, 2, 1)).toBe(16);
    expect(maxClients(2, 2, 100)).toBe(40);
  });
});
