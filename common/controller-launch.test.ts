import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { CONTROLLER_NODE_FLAGS, launchedWithControllerFlags } from "./controller-launch.js";

/** The young generation's size (MiB) a node process reaches while allocating, launched with `flags`. */
function youngGenerationMiB(flags: string[], nodeOptions = ""): number {
  const script = `
    const v8 = require("node:v8");
    let keep = [];
    for (let i = 0; i < 3e6; i++) { keep.push({ i, s: "x" + i }); if (keep.length > 200000) keep = []; }
    const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    process.stdout.write(String(ns.space_size / 2 ** 20));`;
  const env = { ...process.env, NODE_OPTIONS: nodeOptions };
  return Number(execFileSync(process.execPath, [...flags, "-e", script], { env, encoding: "utf8" }));
}

describe("controller launch flags", () => {
  it("are recognised on node's command line or in NODE_OPTIONS, and only when all are there", () => {
    expect(launchedWithControllerFlags(CONTROLLER_NODE_FLAGS, "")).toBe(true);
    expect(launchedWithControllerFlags([], `--trace-warnings ${CONTROLLER_NODE_FLAGS.join(" ")}`)).toBe(true);
    expect(launchedWithControllerFlags(["--max-semi-space-size=16"], "")).toBe(false);
    expect(launchedWithControllerFlags([], "")).toBe(false);
  });

  it("take effect at launch: a larger young generation than node's default", () => {
    const plain = youngGenerationMiB([]);
    expect(youngGenerationMiB(CONTROLLER_NODE_FLAGS)).toBeGreaterThan(plain);
    expect(youngGenerationMiB([], CONTROLLER_NODE_FLAGS.join(" "))).toBeGreaterThan(plain);
  });
});
