import { describe, expect, it } from "vitest";
import { folderCycles } from "../../.ci/folder-cycles.mjs";

const graph = (edges: Record<string, string[]>) =>
  Object.entries(edges).map(([source, to]) => ({
    source,
    dependencies: to.map((resolved) => ({ resolved })),
  }));

describe("folderCycles", () => {
  it("finds none in a layered graph", () => {
    expect(
      folderCycles(
        graph({ "cli/": ["common/", "proto/", "fs"], "common/": ["proto/", "os"], "proto/": [], fs: [] }),
      ),
    ).toEqual([]);
  });

  it("finds each cycle between folders once, ignoring packages and self edges", () => {
    const cycles = folderCycles(
      graph({
        "agent/": ["agent/", "common/"],
        "cli/": ["common/", "controller/"],
        "common/": ["cli/", "fs"],
        "controller/": ["common/"],
        fs: ["common/"],
      }),
    );
    expect(cycles).toEqual([
      ["cli/", "common/", "cli/"],
      ["cli/", "controller/", "common/", "cli/"],
    ]);
  });
});
