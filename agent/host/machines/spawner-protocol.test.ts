import { describe, expect, it } from "vitest";
import {
  encodeDestroy,
  encodeSimpleQuotas,
  encodeSnapshot,
  encodeStart,
  MAX_FRAME,
  parseReply,
} from "./spawner-protocol.js";

function words(buf: Buffer): string[] {
  const len = buf.readUInt32LE(0);
  expect(buf.length).toBe(4 + len);
  const body = buf.subarray(4).toString("utf8");
  expect(body.endsWith("\0")).toBe(true);
  return body.slice(0, -1).split("\0");
}

describe("spawner requests", () => {
  it("encode a start as tagged whole words, empty arguments kept", () => {
    const b = encodeStart(7, {
      procsFiles: ["/sys/fs/cgroup/a/cgroup.procs"],
      logFile: "/var/log/x",
      env: { PATH: "/usr/bin", X: "a b; $(rm -rf /)" },
      argv: ["systemd-nspawn", "", "--x=y z"],
    });
    expect(words(b)).toEqual([
      "7",
      "start",
      "o/var/log/x",
      "c/sys/fs/cgroup/a/cgroup.procs",
      "ePATH=/usr/bin",
      "eX=a b; $(rm -rf /)",
      "asystemd-nspawn",
      "a",
      "a--x=y z",
    ]);
  });

  it("put the notify socket first when asked for one", () => {
    const b = encodeStart(2, { procsFiles: [], logFile: "/l", env: {}, argv: ["x"], notifySocket: "/s/n" });
    expect(words(b)).toEqual(["2", "start", "o/l", "n/s/n", "ax"]);
  });

  it("refuse NUL bytes, bad env names, empty commands and oversize frames", () => {
    const base = { procsFiles: [], logFile: "/l", env: {}, argv: ["true"] };
    expect(() => encodeStart(1, { ...base, argv: ["a\0b"] })).toThrow(/NUL/);
    expect(() => encodeStart(1, { ...base, env: { "A=B": "x" } })).toThrow(/variable name/);
    expect(() => encodeStart(1, { ...base, argv: [] })).toThrow(/command/);
    expect(() => encodeStart(1, { ...base, logFile: "" })).toThrow(/log file/);
    expect(() => encodeStart(1, { ...base, argv: ["x".repeat(MAX_FRAME)] })).toThrow(/too large/);
  });

  it("encode a snapshot; a name with a slash or a dot-dot is refused", () => {
    expect(
      words(encodeSnapshot(3, { source: "/p/b", parent: "/p/e", name: "root", readonly: true })),
    ).toEqual(["3", "snap", "s/p/b", "d/p/e", "nroot", "r"]);
    expect(words(encodeSnapshot(4, { source: "/s", parent: "/d", name: "n", readonly: false }))).toHaveLength(
      5,
    );
    for (const name of ["a/b", "..", ".", ""])
      expect(() => encodeSnapshot(1, { source: "/s", parent: "/d", name, readonly: false })).toThrow();
  });

  it("encode a destroy; a name with a slash or a dot-dot, or no parent, is refused", () => {
    expect(words(encodeDestroy(7, "/p/@env/.tmp-1", "root"))).toEqual([
      "7",
      "destroy",
      "d/p/@env/.tmp-1",
      "nroot",
    ]);
    for (const name of ["a/b", "..", ".", ""]) expect(() => encodeDestroy(1, "/d", name)).toThrow();
    expect(() => encodeDestroy(1, "", "root")).toThrow();
  });

  it("carry a disk limit as whole bytes; zero, negative, fractional and unsafe limits are refused", () => {
    const r = { source: "/s", parent: "/d", name: "root", readonly: false };
    expect(words(encodeSnapshot(5, { ...r, limitBytes: 64 * 2 ** 20 }))).toEqual([
      "5",
      "snap",
      "s/s",
      "d/d",
      "nroot",
      "q67108864",
    ]);
    for (const limitBytes of [0, -1, 1.5, Number.NaN, 2 ** 60])
      expect(() => encodeSnapshot(1, { ...r, limitBytes })).toThrow(/disk limit/);
  });

  it("encode simple quotas for one directory", () => {
    expect(words(encodeSimpleQuotas(9, "/pool"))).toEqual(["9", "squota", "p/pool"]);
    expect(() => encodeSimpleQuotas(9, "")).toThrow();
  });
});

describe("spawner replies", () => {
  it("parse ok, err and exit lines", () => {
    expect(parseReply("5 ok 1234")).toEqual({ kind: "ok", id: 5, pid: 1234 });
    expect(parseReply("6 ok")).toEqual({ kind: "ok", id: 6 });
    expect(parseReply("7 err cgroup 2")).toEqual({ kind: "err", id: 7, stage: "cgroup", errno: 2 });
    expect(parseReply("x 99 0 -1")).toEqual({ kind: "exit", pid: 99, code: 0, signal: null });
    expect(parseReply("l 99 123")).toEqual({ kind: "leader", pid: 99, leader: 123 });
    expect(parseReply("x 99 -1 9")).toEqual({ kind: "exit", pid: 99, code: null, signal: 9 });
  });

  it("ignore anything else", () => {
    for (const l of [
      "",
      "? err parse 22",
      "5 ok abc",
      "5 maybe",
      "x 1 2",
      "x a 0 -1",
      "5 err cgroup",
      "5 ok 1 2",
    ])
      expect(parseReply(l)).toBeUndefined();
  });
});
