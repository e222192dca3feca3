import { describe, expect, it } from "vitest";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import type { SeedImage } from "../../proto/gen/protoctl/v1/types.js";
import { reportSeedWait, type SeedWait } from "./run.js";

const seed = (o: Partial<SeedImage> = {}): SeedImage => ({
  base: "b",
  version: 1,
  sizeBytes: 1,
  checksum: "blake3-4m:aa",
  node: "n1",
  createdMs: 1,
  publishedAtSeal: false,
  ...o,
});

function report(got: SeedImage, recorded: SeedImage | undefined, sealSum: string, ms = 12.4) {
  const lines: PushProgress[] = [];
  let wait: SeedWait | undefined;
  reportSeedWait((p) => lines.push(p), { seed: (w) => (wait = w) }, got, recorded, sealSum, ms);
  return { lines, wait };
}

describe("reportSeedWait", () => {
  it("a seed on record that matches the seal was already published", () => {
    const { wait, lines } = report(seed({ publishedAtSeal: true }), seed(), "blake3-4m:aa");
    expect(wait).toEqual({ node: "n1", how: "recorded", waitMs: 12 });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.node).toBe("");
    expect(lines[0]!.message).toBe("seed image already published on n1; waited 12 ms");
  });

  it("no record: the origin's answer says whether the image was begun at seal", () => {
    expect(report(seed({ publishedAtSeal: true }), undefined, "").wait?.how).toBe("at-seal");
    expect(report(seed(), undefined, "").wait?.how).toBe("published");
  });

  it("a record that does not match the seal (republished) is not counted as on record", () => {
    const rec = seed({ checksum: "blake3-4m:bb" });
    expect(report(seed(), rec, "blake3-4m:aa").wait?.how).toBe("published");
    // the record names an image on no node (collected): the origin made a new one
    expect(report(seed({ publishedAtSeal: true }), seed({ node: "" }), "blake3-4m:aa").wait?.how).toBe(
      "at-seal",
    );
  });
});
