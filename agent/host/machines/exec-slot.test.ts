import { describe, expect, it } from "vitest";
import { EXEC_SLOT_SCRIPT, encodeArgv } from "./exec-slot.js";

describe("exec slots", () => {
  it("sends argv as NUL-terminated words, whatever they hold", () => {
    expect(encodeArgv(["echo", "a b", "$(x)", "l1\nl2"]).toString()).toBe("echo\0a b\0$(x)\0l1\nl2\0");
    expect(() => encodeArgv(["a\0b"])).toThrow(/NUL/);
  });
  it("reads the command from fd 3 only, never from its arguments", () => {
    expect(EXEC_SLOT_SCRIPT).toContain('mapfile -d "" -t -u 3 a');
    expect(EXEC_SLOT_SCRIPT).toMatch(/exec "\$\{a\[@\]\}"$/);
  });
});
