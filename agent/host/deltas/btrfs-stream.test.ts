import { describe, expect, it } from "vitest";
import { parseReceivedName } from "./btrfs-stream.js";

describe("parseReceivedName", () => {
  it("tells full from incremental streams", () => {
    expect(parseReceivedName("At subvol demo@1\n")).toEqual({ name: "demo@1", kind: "full" });
    expect(parseReceivedName("At snapshot demo@2\n")).toEqual({ name: "demo@2", kind: "incremental" });
    expect(parseReceivedName("ERROR: x\n")).toBeUndefined();
  });
});
