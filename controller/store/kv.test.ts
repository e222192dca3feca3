import { describe, expect, it } from "vitest";
import { type Kv, TxnBatcher, type TxnResult, type TxnSpec } from "./kv.js";

/** A Kv whose commit records each txn and fails it when a condition names a key in `stale`. */
function recordingKv(stale = new Set<string>()) {
  const txns: TxnSpec[] = [];
  let revision = 100;
  const kv = {
    commit: async (spec: TxnSpec): Promise<TxnResult> => {
      txns.push(spec);
      await new Promise((r) => setTimeout(r, 1));
      const ok = spec.conditions.every((c) => !stale.has(c.key));
      return { succeeded: ok, revision: ok ? ++revision : revision };
    },
  };
  return { kv: kv as unknown as Kv, txns };
}

const put = (key: string) => ({ op: "put" as const, key, value: Buffer.from(key) });
const fence = { key: "leader", modRevision: 7 };

describe("TxnBatcher", () => {
  it("folds parts into one txn: shared conditions once, writes in order, a key written twice in the next txn", async () => {
    const { kv, txns } = recordingKv();
    const b = new TxnBatcher(kv, 1, 0);
    // parts submitted in the same tick fold into one txn
    const parts = [
      b.commit({ conditions: [fence], writes: [put("a")] }),
      b.commit({ conditions: [{ key: "s1", modRevision: 0 }, fence], writes: [put("s1"), put("e1")] }),
      b.commit({ conditions: [{ key: "s2", modRevision: 3 }, fence], writes: [put("s2")] }),
      b.commit({ conditions: [fence], writes: [put("s1")] }),
      b.commit({ conditions: [{ key: "s2", modRevision: 3 }], writes: [put("e2")] }),
    ];
    const revs = await Promise.all(parts);
    expect(txns).toHaveLength(2);
    expect(txns[0]).toEqual({
      conditions: [fence, { key: "s1", modRevision: 0 }, { key: "s2", modRevision: 3 }],
      writes: [put("a"), put("s1"), put("e1"), put("s2"), put("e2")],
    });
    expect(txns[1]).toEqual({ conditions: [fence], writes: [put("s1")] });
    expect(revs.map((r) => r.succeeded)).toEqual([true, true, true, true, true]);
    expect(revs[0]!.revision).toBe(revs[1]!.revision);
    expect(revs[3]!.revision).toBeGreaterThan(revs[0]!.revision);
    expect(b.stats).toMatchObject({ txns: 2, parts: 5, fallbacks: 0 });
  });

  it("keeps a txn within etcd's op limit, and sends a part too large on its own alone", async () => {
    const { kv, txns } = recordingKv();
    const b = new TxnBatcher(kv, 1, 0);
    const big = Array.from({ length: 130 }, (_, i) => put(`big${i}`));
    const all = [b.commit({ conditions: [], writes: [put("x")] })];
    for (let i = 0; i < 70; i++)
      all.push(b.commit({ conditions: [], writes: [put(`k${i}a`), put(`k${i}b`)] }));
    all.push(b.commit({ conditions: [], writes: big }));
    await Promise.all(all);
    // 1 + 59 parts of 2 (a 60th would pass 120), the 11 left, then the large part alone
    expect(txns.map((t) => t.writes.length)).toEqual([119, 22, 130]);
  });

  it("commits each part on its own when the merged txn fails, so only the stale one fails", async () => {
    const { kv, txns } = recordingKv(new Set(["stale"]));
    const b = new TxnBatcher(kv, 1, 0);
    const first = b.commit({ conditions: [], writes: [put("a")] });
    const ok = b.commit({ conditions: [{ key: "fresh", modRevision: 1 }], writes: [put("fresh")] });
    const bad = b.commit({ conditions: [{ key: "stale", modRevision: 1 }], writes: [put("stale")] });
    expect((await first).succeeded).toBe(true);
    expect((await ok).succeeded).toBe(true);
    expect((await bad).succeeded).toBe(false);
    expect(txns.map((t) => t.writes.map((w) => w.key))).toEqual([
      ["a", "fresh", "stale"],
      ["a"],
      ["fresh"],
      ["stale"],
    ]);
    expect(b.stats.fallbacks).toBe(1);
  });
});
