import { describe, expect, it } from "vitest";
import { failureMessage, keptOutput } from "./failure-output.js";

describe("a failed env's kept output", () => {
  it("appends the machine's last lines to the message, and reads them back", () => {
    const output = `${Array.from({ length: 30 }, (_, i) => `line ${i}`).join("\n")}\nFailed to determine whether the unified cgroups hierarchy is used: No medium found\n`;
    const m = failureMessage({ message: "machine web exited during start", output });
    expect(m.startsWith("machine web exited during start\n")).toBe(true);
    expect(m).toContain("No medium found");
    expect(m).not.toContain("line 10\n");
    expect(keptOutput(m).split("\n").filter(Boolean)).toHaveLength(20);
  });

  it("leaves a message without output alone", () => {
    expect(failureMessage({ message: "no", output: "\n \n" })).toBe("no");
    expect(keptOutput("no")).toBe("");
  });
});
