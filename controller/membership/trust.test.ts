import { describe, expect, it } from "vitest";
import { BaseVersionState } from "../../proto/gen/protoctl/v1/types.js";
import { reportedVersion } from "../../test/support/controller/base-version.js";
import { classify, SEAL_GRACE_MS, sealMap, trusts } from "./trust.js";

const SUM = `blake3-4m:${"a".repeat(64)}`;

const bv = reportedVersion;

describe("trusting base version reports", () => {
  const seal = bv("deb@1", { origin: "a", sealedMs: 1, checksum: SUM, holders: ["d"] });

  it("believes the origin, recorded holders and a matching checksum; nothing unsealed", () => {
    expect(trusts("a", bv("deb@1"), seal)).toBe(true);
    expect(trusts("d", bv("deb@1"), seal)).toBe(true);
    const hydrated = { checksum: SUM, state: BaseVersionState.BASE_VERSION_STATE_HYDRATED };
    expect(trusts("b", bv("deb@1", hydrated), seal)).toBe(true);
    // a subvolume of its own with the right checksum claimed: not what the seal names
    expect(trusts("b", bv("deb@1", { checksum: SUM }), seal)).toBe(false);
    expect(trusts("b", bv("deb@1"), seal)).toBe(false);
    expect(trusts("b", bv("deb@1", { checksum: `blake3-4m:${"b".repeat(64)}` }), seal)).toBe(false);
    expect(trusts("a", bv("deb@2"), undefined)).toBe(false);
  });

  it("a seal without a checksum yet is matched by no report's empty checksum", () => {
    const fresh = bv("deb@1", { origin: "a", sealedMs: 1 });
    expect(trusts("b", bv("deb@1"), fresh)).toBe(false);
    expect(trusts("a", bv("deb@1"), fresh)).toBe(true);
  });

  it("trusts legacy seals (no origin) from any reporter", () => {
    expect(trusts("z", bv("old@3"), bv("old@3"))).toBe(true);
  });

  it("splits a report, and adds the node's own fresh seals it does not report yet", () => {
    const now = 1_000_000;
    const seals = sealMap([
      seal,
      bv("deb@2", { origin: "b", sealedMs: now - 1000 }),
      bv("deb@3", { origin: "b", sealedMs: now - SEAL_GRACE_MS - 1 }),
    ]);
    const r = classify("b", [bv("deb@1"), bv("evil@1"), bv("deb@1")], seals, now);
    expect(r.foreign.map((x) => `${x.base}@${x.version}`)).toEqual(["deb@1", "evil@1"]);
    expect(r.trusted.map((x) => `${x.base}@${x.version}`)).toEqual(["deb@2"]);
    expect(classify("b", [bv("deb@3")], seals, now).trusted.map((x) => x.version)).toEqual([3, 2]);
  });
});
