import { describe, expect, it } from "vitest";
import { layerBuildMsg, layersMsg } from "./convert.js";

const build = {
  layer: "web",
  base: "deb@2",
  digest: "d",
  parents: [],
  kind: "ansible" as const,
  builtMs: 5,
  sizeBytes: 7,
};

describe("layer build messages", () => {
  it("say how each build was made, empty for builds that did not record it", () => {
    expect(layerBuildMsg({ ...build, from: "rebased from deb@1" }, "n1")).toEqual({
      base: "deb@2",
      digest: "d",
      sizeBytes: 7,
      builtMs: 5,
      node: "n1",
      from: "rebased from deb@1",
    });
    expect(layerBuildMsg(build, "n1").from).toBe("");
    const [layer] = layersMsg([{ ...build, from: "scratch" }], "n1");
    expect(layer?.builds.map((b) => b.from)).toEqual(["scratch"]);
  });
});
