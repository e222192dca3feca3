import { describe, expect, it } from "vitest";
import { lineSplitter } from "../../../common/progress-run.js";
import { isNspawnNoise } from "./nspawn-noise.js";

const NOISE = `Attempted to remove disk file system under "/run/systemd/nspawn/propagate/pb-0a1b2c3d4e", and we can't allow that.`;

describe("nspawn noise", () => {
  it("knows the propagate line, and nothing like a real error", () => {
    expect(isNspawnNoise(NOISE)).toBe(true);
    expect(isNspawnNoise(`${NOISE}\n`)).toBe(true);
    expect(isNspawnNoise("E: Unable to locate package nginx")).toBe(false);
    expect(isNspawnNoise(`Attempted to remove disk file system under "/etc", and we can't allow that.`)).toBe(
      false,
    );
  });

  it("drops it from a stream split anywhere, keeping every other line in order", () => {
    const text = `Reading package lists...\n${NOISE}\nDone\nlast`;
    for (let cut = 0; cut <= text.length; cut += 7) {
      const out: string[] = [];
      const f = lineSplitter((t) => out.push(t), isNspawnNoise);
      for (let i = 0; i < text.length; i += Math.max(1, cut)) f.write(text.slice(i, i + Math.max(1, cut)));
      f.flush();
      expect(out.join("")).toBe("Reading package lists...\nDone\nlast");
    }
  });
});
