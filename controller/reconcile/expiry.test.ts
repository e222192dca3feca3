import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../common/logger.js";
import type { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { Informer } from "../store/informer.js";
import type { TxnSpec, Versioned } from "../store/kv.js";
import type { ClusterStore, Collection, LabRecord } from "../store/store.js";
import { WrittenValues } from "../store/written-values.js";
import { ExpiryReconciler } from "./expiry.js";

/** An in-memory collection: what an Informer reads (list, then watch) and a way to change it. */
function memoryCollection<T>(initial: Record<string, T>) {
  let rev = 1;
  let emit: ((events: unknown[], rev: number) => void) | undefined;
  const items = new Map<string, Versioned<T>>();
  const put = (name: string, value: T) =>
    items.set(name, { key: `k/${name}`, value, modRevision: ++rev, createRevision: rev, lease: "0" });
  for (const [n, v] of Object.entries(initial)) put(n, v);
  const collection = {
    codec: {
      encode: (v: T) => Buffer.from(JSON.stringify(v)),
      decode: (b: Buffer) => JSON.parse(b.toString()),
    },
    key: (name: string) => `k/${name}`,
    nameOf: (key: string) => key.slice(2),
    written: new WrittenValues<T>(),
    list: async () => ({ items: [...items.values()], revision: rev }),
    watch: async (_from: number, cb: (events: unknown[], rev: number) => void) => {
      emit = cb;
      return async () => {
        emit = undefined;
      };
    },
  } as unknown as Collection<T>;
  return {
    collection,
    /** A change arriving over the watch. */
    change(name: string, value: T | undefined) {
      rev++;
      if (value === undefined) items.delete(name);
      else put(name, value);
      const e =
        value === undefined
          ? { type: "delete", key: `k/${name}`, modRevision: rev }
          : { type: "put", key: `k/${name}`, value: Buffer.from(JSON.stringify(value)), modRevision: rev };
      emit?.([e], rev);
    },
  };
}

const spec = (name: string, expiresMs?: number) => ({ name, expiresMs }) as unknown as EnvSpec;
const tick = () => new Promise((r) => setImmediate(r));

describe("ExpiryReconciler", () => {
  let stop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
  });

  async function setUp(initial: Record<string, EnvSpec>, now: number) {
    const specs = memoryCollection(initial);
    const labs = memoryCollection<LabRecord>({});
    const specInformer = new Informer(specs.collection);
    const labInformer = new Informer(labs.collection);
    const commits: TxnSpec[] = [];
    const store = {
      kv: {
        commit: async (t: TxnSpec) => {
          commits.push(t);
          return { succeeded: true, revision: 1000 + commits.length };
        },
      },
      events: { write: async () => ({ op: "put", key: "events/x", value: Buffer.from("") }) },
    } as unknown as ClusterStore;
    const clock = { now };
    const r = new ExpiryReconciler({
      store,
      specs: specInformer,
      labs: labInformer,
      fence: () => [],
      log: silentLogger(),
      now: () => clock.now,
    });
    r.start();
    await specInformer.start();
    await labInformer.start();
    r.arm();
    stop = async () => {
      await r.stop();
      await specInformer.stop();
      await labInformer.stop();
    };
    return { r, specs, commits, clock };
  }

  it("arms for the earliest expiry among the envs that have one, as specs come and go", async () => {
    const t0 = 1_000_000;
    const { r, specs } = await setUp(
      { a: spec("a"), b: spec("b", t0 + 50_000), c: spec("c", t0 + 90_000) },
      t0,
    );
    expect(r.nextExpiry()).toBe(t0 + 50_000);
    specs.change("d", spec("d", t0 + 20_000));
    await tick();
    expect(r.nextExpiry()).toBe(t0 + 20_000);
    // its TTL dropped (the spec rewritten without one): the next one counts again
    specs.change("d", spec("d"));
    await tick();
    expect(r.nextExpiry()).toBe(t0 + 50_000);
    specs.change("b", undefined);
    await tick();
    expect(r.nextExpiry()).toBe(t0 + 90_000);
    // a thousand envs without a TTL leave the expiry where it is
    for (let i = 0; i < 1000; i++) specs.change(`e${i}`, spec(`e${i}`));
    await tick();
    expect(r.nextExpiry()).toBe(t0 + 90_000);
  });

  it("a sweep deletes the envs that are due and no other", async () => {
    const t0 = 2_000_000;
    const { r, specs, commits, clock } = await setUp(
      { a: spec("a"), b: spec("b", t0 + 10), c: spec("c", t0 + 60_000) },
      t0,
    );
    specs.change("d", spec("d", t0 + 5));
    await tick();
    clock.now = t0 + 1000;
    await r.sweep();
    const deleted = commits.map((c) => c.writes.find((w) => w.op === "delete")?.key).sort();
    expect(deleted).toEqual(["k/b", "k/d"]);
    expect(r.nextExpiry()).toBe(t0 + 60_000);
  });
});
