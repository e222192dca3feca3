import { describe, expect, it } from "vitest";
import { TerminalError, WorkQueue } from "./queue.js";

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe("WorkQueue", () => {
  it("dedups keys waiting in the queue", async () => {
    const q = new WorkQueue();
    q.add("a");
    q.add("a");
    q.add("b");
    expect(q.length).toBe(2);
    expect(await q.get()).toBe("a");
    expect(await q.get()).toBe("b");
  });

  it("never hands out a key twice at once; a change during processing comes back once after", async () => {
    const q = new WorkQueue();
    q.add("a");
    expect(await q.get()).toBe("a");
    q.add("a");
    q.add("a");
    expect(q.length).toBe(0);
    q.done("a");
    expect(q.length).toBe(1);
    expect(await q.get()).toBe("a");
    q.done("a");
    expect(q.length).toBe(0);
  });

  it("backs off exponentially up to the cap", () => {
    const q = new WorkQueue({ backoff: { baseMs: 10, maxMs: 100 } });
    expect([1, 2, 3, 4, 5, 6].map((n) => q.delayFor(n))).toEqual([10, 20, 40, 80, 100, 100]);
    expect(q.retry("k")).toBe(10);
    expect(q.retry("k")).toBe(20);
    q.forget("k");
    expect(q.retry("k")).toBe(10);
    q.shutdown();
  });

  it("retries failures with backoff, drops terminal errors, honours requeueAfter", async () => {
    const q = new WorkQueue({ backoff: { baseMs: 5, maxMs: 50 }, concurrency: 2 });
    const calls: Record<string, number> = {};
    const errors: string[] = [];
    const done = q.run(
      async (key) => {
        calls[key] = (calls[key] ?? 0) + 1;
        if (key === "flaky" && calls[key]! < 3) throw new Error("try again");
        if (key === "bad") throw new TerminalError("never");
        if (key === "later" && calls[key] === 1) return { requeueAfterMs: 10 };
        return undefined;
      },
      (key, _err, retry) => errors.push(`${key}:${retry ?? "terminal"}`),
    );
    q.add("flaky");
    q.add("bad");
    q.add("later");
    await tick(120);
    q.shutdown();
    await done;
    expect(calls).toEqual({ flaky: 3, bad: 1, later: 2 });
    expect(errors.sort()).toEqual(["bad:terminal", "flaky:10", "flaky:5"]);
  });

  it("processes distinct keys concurrently up to the limit", async () => {
    const q = new WorkQueue({ concurrency: 3 });
    let running = 0;
    let peak = 0;
    const done = q.run(async () => {
      running++;
      peak = Math.max(peak, running);
      await tick(10);
      running--;
      return undefined;
    });
    for (let i = 0; i < 10; i++) q.add(`k${i}`);
    await tick(80);
    q.shutdown();
    await done;
    expect(peak).toBe(3);
  });
});
