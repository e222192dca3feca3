/**
 * The store against real etcd: compare-and-swap with two clients (two
 * controllers) writing the same key concurrently loses no update; creates
 * conflict; the batcher folds parts and isolates a stale one; informers
 * follow; events expire with their lease.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import { startEtcd, type TestEtcd } from "../../test/fixtures/etcd.js";
import { uniquePrefix } from "../../test/support/controller/cluster.js";
import { newStatus } from "../reconcile/env-reconciler.js";
import { plainJson } from "./codec.js";
import { Informer } from "./informer.js";
import { ClusterStore, codecs } from "./store.js";

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

async function withStores(
  n: number,
  fn: (stores: ClusterStore[], prefix: string) => Promise<void>,
): Promise<void> {
  const prefix = uniquePrefix();
  const stores = Array.from({ length: n }, () => new ClusterStore({ endpoints: [etcd.endpoint], prefix }));
  try {
    await fn(stores, prefix);
  } finally {
    await stores[0]!.purge();
    expect(await stores[0]!.kv.count(prefix)).toBe(0);
    for (const s of stores) await s.close();
  }
}

describe("ClusterStore on etcd", () => {
  it("loses no update when two controllers read-modify-write the same key concurrently", async () => {
    await withStores(2, async ([a, b]) => {
      const codec = plainJson<{ n: number; by: string[] }>();
      const key = `${a!.keys.prefix}counter`;
      const bump = (s: ClusterStore, who: string) =>
        s.kv.update(key, codec, (cur) => ({ n: (cur?.n ?? 0) + 1, by: [...(cur?.by ?? []), who] }), {
          attempts: 200,
        });
      await Promise.all(Array.from({ length: 40 }, (_, i) => bump(i % 2 ? a! : b!, i % 2 ? "a" : "b")));
      const final = await a!.kv.get(key, codec);
      expect(final?.value.n).toBe(40);
      expect(final?.value.by.filter((x) => x === "a")).toHaveLength(20);
    });
  });

  it("a write from a stale read fails instead of clobbering", async () => {
    await withStores(2, async ([a, b]) => {
      await a!.nodes.create("n1", {
        name: "n1",
        address: "x:1",
        state: 0,
        cordoned: false,
        draining: false,
        labels: {},
        capacity: undefined,
        baseVersions: [],
        foreignBaseVersions: [],
        capabilities: [],
        joinedMs: 1,
        lastSeenMs: 1,
        agentVersion: "",
      });
      const seenByA = await a!.nodes.get("n1");
      await b!.nodes.modify("n1", (n) => ({ ...n, cordoned: true }));
      const r = await a!.kv.commit({
        conditions: [{ key: seenByA!.key, modRevision: seenByA!.modRevision }],
        writes: [
          {
            op: "put",
            key: seenByA!.key,
            value: codecs.node.encode({ ...seenByA!.value, labels: { x: "1" } }),
          },
        ],
      });
      expect(r.succeeded).toBe(false);
      expect((await a!.nodes.get("n1"))?.value.cordoned).toBe(true);
      await expect(b!.nodes.create("n1", seenByA!.value)).rejects.toMatchObject({
        code: Code.ALREADY_EXISTS,
        reason: "NAME_IN_USE",
      });
    });
  });

  it("batches concurrent transactions into one etcd txn and isolates a stale part", async () => {
    await withStores(1, async ([s]) => {
      const st = newStatus();
      const parts = Array.from({ length: 50 }, (_, i) =>
        s!.batcher.commit({
          conditions: [{ key: s!.keys.envStatus(`e${i}`), modRevision: 0 }],
          writes: [{ op: "put", key: s!.keys.envStatus(`e${i}`), value: codecs.envStatus.encode(st) }],
        }),
      );
      const results = await Promise.all(parts);
      expect(results.every((r) => r.succeeded)).toBe(true);
      expect(s!.batcher.stats.txns).toBeLessThan(10);
      const again = await Promise.all([
        s!.batcher.commit({
          conditions: [{ key: s!.keys.envStatus("e1"), modRevision: 0 }],
          writes: [{ op: "put", key: s!.keys.envStatus("e1"), value: codecs.envStatus.encode(st) }],
        }),
        s!.batcher.commit({
          conditions: [{ key: s!.keys.envStatus("fresh"), modRevision: 0 }],
          writes: [{ op: "put", key: s!.keys.envStatus("fresh"), value: codecs.envStatus.encode(st) }],
        }),
      ]);
      expect(again.map((r) => r.succeeded)).toEqual([false, true]);
    });
  });

  it("keeps an informer current from list + watch", async () => {
    await withStores(2, async ([a, b]) => {
      await a!.envStatus.put("one", newStatus());
      const inf = new Informer(a!.envStatus);
      const seen: string[] = [];
      inf.onChange((name, cur) => seen.push(`${name}:${cur ? EnvPhase[cur.value.phase] : "deleted"}`));
      await inf.start();
      expect(inf.names()).toEqual(["one"]);
      await b!.envStatus.put("two", { ...newStatus(), phase: EnvPhase.ENV_PHASE_RUNNING });
      await b!.envStatus.delete("one");
      await new Promise((r) => setTimeout(r, 300));
      expect(inf.names()).toEqual(["two"]);
      expect(seen).toEqual(["two:ENV_PHASE_RUNNING", "one:deleted"]);
      await inf.stop();
    });
  });

  it("writes events on a lease so they expire", async () => {
    await withStores(1, async ([s]) => {
      const short = new ClusterStore({
        endpoints: [etcd.endpoint],
        prefix: s!.keys.prefix,
        eventTtlSeconds: 2,
      });
      try {
        expect(await short.events.emit({ kind: "test.one", subject: "x/y", message: "hi" })).toBe(true);
        const { events } = await short.events.list();
        expect(events.map((e) => e.kind)).toEqual(["test.one"]);
        const key = (await short.kv.list(short.keys.folder("events"), plainJson<unknown>())).items[0];
        expect(key?.lease).not.toBe("0");
      } finally {
        await short.close();
      }
    });
  });
});
