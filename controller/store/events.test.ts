import { describe, expect, it } from "vitest";
import { Event } from "../../proto/gen/protoctl/v1/types.js";
import { EventLog } from "./events.js";
import { Keys } from "./keys.js";
import type { TxnBatcher } from "./kv.js";

describe("event log writes", () => {
  it("key each event by time, the writer's name made key-safe, and a sequence; bound to the bucket's lease", async () => {
    let grants = 0;
    const lease = () => ({ grant: async () => String(++grants * 100), release: () => undefined });
    const batcher = { kv: { client: { lease } } } as unknown as TxnBatcher;
    const log = new EventLog(batcher, new Keys("/t/"), "ctl a/b:1", 3600);
    const before = Date.now();
    const a = await log.write({ kind: "env.scheduled", subject: "env/x", message: "placed on n1" });
    const b = await log.write({ kind: "env.started", subject: "env/x", message: "RUNNING on n1" });
    expect(a.op).toBe("put");
    const [ka, kb] = [a.key, b.key];
    expect(ka).toMatch(/^\/t\/events\/\d{13}-ctl_a_b_1-00000000$/);
    expect(kb).toMatch(/-ctl_a_b_1-00000001$/);
    expect(Number(ka.split("/").pop()!.slice(0, 13))).toBeGreaterThanOrEqual(before);
    if (a.op !== "put" || b.op !== "put") throw new Error("puts expected");
    expect(a.lease).toBe("100");
    expect(b.lease).toBe("100");
    expect(Event.fromJSON(JSON.parse(a.value.toString()))).toMatchObject({
      kind: "env.scheduled",
      subject: "env/x",
    });
  });
});
