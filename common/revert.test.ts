import { describe, expect, it } from "vitest";
import { Revert } from "./revert.js";

describe("Revert", () => {
  it("undoes newest first on failure and keeps going past a failing undo", async () => {
    const log: string[] = [];
    await expect(
      Revert.run(async (r) => {
        r.add(() => log.push("undo-1"));
        r.add(() => {
          throw new Error("undo-2 failed");
        });
        r.add(async () => log.push("undo-3"));
        throw new Error("step 4 failed");
      }),
    ).rejects.toThrow("step 4 failed");
    expect(log).toEqual(["undo-3", "undo-1"]);
  });

  it("keeps everything on success", async () => {
    const log: string[] = [];
    const v = await Revert.run(async (r) => {
      r.add(() => log.push("undo"));
      return 42;
    });
    expect(v).toBe(42);
    expect(log).toEqual([]);
  });

  it("refuses add after success and runs fail once", async () => {
    const r = new Revert();
    let n = 0;
    r.add(() => n++);
    await r.fail();
    await r.fail();
    expect(n).toBe(1);
    expect(() => r.add(() => 0)).toThrow();
  });
});
