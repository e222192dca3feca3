import { describe, expect, it } from "vitest";
import { EnvPhase, EnvSpec, type EnvStatus } from "../../proto/gen/protoctl/v1/types.js";
import { Informer } from "./informer.js";
import { Keys } from "./keys.js";
import type { Kv, WatchEvent } from "./kv.js";
import { Collection, codecs } from "./store.js";
import { MAX_WRITTEN_VALUES, WrittenValues } from "./written-values.js";

describe("written values", () => {
  it("are kept only while someone reads them, handed over for the exact revision, and bounded", () => {
    const w = new WrittenValues<string>();
    w.remember("k", "v1", 5);
    expect(w.size).toBe(0);
    w.reading(true);
    w.remember("k", "v1", 5);
    expect(w.take("k", 4)).toBeUndefined(); // an older event: not this write, and it stays
    expect(w.take("k", 5)).toBe("v1");
    expect(w.take("k", 5)).toBeUndefined(); // handed over once
    w.remember("k", "v2", 7);
    expect(w.take("k", 9)).toBeUndefined(); // a later write's event: forgotten, not handed over
    expect(w.size).toBe(0);
    for (let i = 0; i <= MAX_WRITTEN_VALUES; i++) w.remember(`k${i}`, "v", i + 1);
    expect(w.size).toBe(MAX_WRITTEN_VALUES);
    expect(w.take("k0", 1)).toBeUndefined();
    expect(w.take(`k${MAX_WRITTEN_VALUES}`, MAX_WRITTEN_VALUES + 1)).toBe("v");
    w.reading(false);
    expect(w.size).toBe(0);
  });

  it("what the API writes reads back equal to itself: taking it is the same as decoding it", () => {
    // a spec as the API gets it (decoded from the wire), with resources, labels and a command
    const wire = EnvSpec.encode(
      EnvSpec.fromPartial({
        name: "e1",
        base: { name: "debian", version: 2 },
        start: true,
        nodeSelector: { team: "a" },
        resources: { memoryBytes: 64 * 2 ** 20, diskBytes: 16 * 2 ** 20 },
        command: { argv: ["sleep", "1"], workdir: "/", user: "", env: { A: "1" } },
      }),
    ).finish();
    const spec = EnvSpec.decode(wire);
    expect(codecs.envSpec.decode(codecs.envSpec.encode(spec))).toEqual(spec);
    const st = status("");
    expect(codecs.envStatus.decode(codecs.envStatus.encode(st))).toEqual(st);
  });

  it("an informer takes the object this process wrote, and decodes every other event", async () => {
    let push: ((events: WatchEvent[], revision: number) => void) | undefined;
    const kv = {
      list: async () => ({ items: [], revision: 10 }),
      watch: async (_p: string, _from: number, cb: typeof push) => {
        push = cb;
        return async () => undefined;
      },
    } as unknown as Kv;
    const keys = new Keys("/t/");
    const statuses = new Collection(kv, keys, "envStatus", codecs.envStatus, "env", (n) => keys.envStatus(n));
    const informer = new Informer(statuses);
    await informer.start();
    const mine: EnvStatus = { ...status("mine"), phase: EnvPhase.ENV_PHASE_PENDING };
    statuses.written.remember(statuses.key("a"), mine, 11);
    // the event's bytes say otherwise: the object written at revision 11 is what the informer keeps
    const other = codecs.envStatus.encode({ ...mine, message: "decoded" });
    push!([{ type: "put", key: statuses.key("a"), value: other, modRevision: 11 }], 11);
    expect(informer.get("a")?.value).toBe(mine);
    // another writer's change (revision 12) is decoded
    push!([{ type: "put", key: statuses.key("a"), value: other, modRevision: 12 }], 12);
    expect(informer.get("a")?.value.message).toBe("decoded");
    expect(informer.get("a")?.modRevision).toBe(12);
    await informer.stop();
    statuses.written.remember(statuses.key("b"), mine, 13);
    expect(statuses.written.size).toBe(0);
  });
});

function status(message: string): EnvStatus {
  return {
    phase: EnvPhase.ENV_PHASE_PENDING,
    node: "",
    message,
    reasons: [],
    createdMs: 1,
    startedMs: 0,
    baseVersion: 0,
    leaderPid: 0,
    addresses: [],
    generation: 0,
  };
}
