import { describe, expect, it } from "vitest";
import {
  estimateSeedImageSize,
  MIN_IMAGE_BYTES,
  parseBtrfsDuTotal,
  parseDumpSuperFsid,
} from "./seed-image.js";

const MiB = 1024 * 1024;

describe("seed image sizing and parsers", () => {
  it("never goes below the mkfs minimum and grows with data and inodes", () => {
    expect(estimateSeedImageSize(0, 0)).toBe(MIN_IMAGE_BYTES);
    const a = estimateSeedImageSize(1024 * MiB, 1000);
    expect(a).toBeGreaterThan(1024 * MiB * 1.1);
    expect(a % MiB).toBe(0);
    expect(estimateSeedImageSize(1024 * MiB, 100_000)).toBeGreaterThan(a);
  });
  it("reads btrfs filesystem du totals", () => {
    const out =
      "     Total   Exclusive  Set shared  Filename\n 169869312   169869312           0  /p/demo@1\n";
    expect(parseBtrfsDuTotal(out)).toBe(169869312);
    expect(() => parseBtrfsDuTotal("garbage")).toThrow();
  });
  it("reads the fsid from dump-super", () => {
    const out =
      "superblock: bytenr=65536\nfsid\t\t\t6a40567f-1f9a-49ea-94ba-da81c175af6f\nmetadata_uuid\t\t...\n";
    expect(parseDumpSuperFsid(out)).toBe("6a40567f-1f9a-49ea-94ba-da81c175af6f");
  });
});
