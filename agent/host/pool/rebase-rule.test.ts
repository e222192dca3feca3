import { describe, expect, it } from "vitest";
import { pathsToDescribe, rebaseConflict, type UpperKind } from "./rebase-rule.js";

// an upper as a build leaves it: /etc/app.conf written, /bin/vi deleted, /opt/data made opaque
const upper = new Map<string, UpperKind>([
  ["", "dir"],
  ["etc", "dir"],
  ["etc/app.conf", "other"],
  ["bin", "dir"],
  ["bin/vi", "whiteout"],
  ["opt", "dir"],
  ["opt/data", "opaque-dir"],
  ["usr", "dir"],
  ["usr/lib", "other"],
]);
const ch = (...paths: string[]) => paths.map((path) => ({ path }));

describe("rebaseConflict", () => {
  it("allows changes where the upper has nothing or a plain directory that merges", () => {
    expect(
      rebaseConflict(ch("etc/new-file", "var/lib/x", "srv", "bin/sh", "opt/other"), upper),
    ).toBeUndefined();
    expect(rebaseConflict([], upper)).toBeUndefined();
  });

  it("refuses a changed path the upper holds: file, whiteout, or a directory whose metadata changed", () => {
    expect(rebaseConflict(ch("etc/new", "etc/app.conf"), upper)).toBe(
      "/etc/app.conf changed in the base and the layer holds it (other)",
    );
    expect(rebaseConflict(ch("bin/vi"), upper)).toMatch(/^\/bin\/vi changed .* \(whiteout\)$/);
    expect(rebaseConflict(ch("etc"), upper)).toMatch(/^\/etc changed .* \(dir\)$/);
    expect(rebaseConflict(ch(""), upper)).toMatch(/^\/ changed/);
  });

  it("refuses a change under a whiteout, an opaque directory or a non-directory of the upper", () => {
    expect(rebaseConflict(ch("bin/vi/x"), upper)).toBe(
      "/bin/vi/x changed in the base under whiteout /bin/vi of the layer",
    );
    expect(rebaseConflict(ch("opt/data/a/b"), upper)).toMatch(/under opaque-dir \/opt\/data/);
    expect(rebaseConflict(ch("usr/lib/python3/x.py"), upper)).toMatch(/under other \/usr\/lib/);
    const opaqueRoot = new Map<string, UpperKind>([["", "opaque-dir"]]);
    expect(rebaseConflict(ch("anything"), opaqueRoot)).toMatch(/under opaque-dir \/ /);
  });

  it("refuses a changed hard-linked file, wherever it is", () => {
    expect(rebaseConflict([{ path: "srv/a", hardLinked: true }], upper)).toMatch(/hard-linked/);
  });
});

describe("pathsToDescribe", () => {
  it("lists each path and its ancestors once, parents first", () => {
    expect(pathsToDescribe(ch("etc/a/b", "etc/c", ""))).toEqual(["", "etc", "etc/a", "etc/c", "etc/a/b"]);
  });
});
