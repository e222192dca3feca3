import { describe, expect, it } from "vitest";
import { usesRawTasks } from "./ansible.js";

describe("usesRawTasks", () => {
  it("finds raw tasks, short or fully qualified, and nothing else", () => {
    expect(usesRawTasks("- hosts: all\n  tasks:\n    - raw: apt-get install -y python3\n")).toBe(true);
    expect(usesRawTasks("- hosts: all\n  tasks:\n    - name: py\n      ansible.builtin.raw: true\n")).toBe(
      true,
    );
    expect(usesRawTasks("- hosts: all\n  tasks:\n    - apt: name=nginx\n")).toBe(false);
    expect(usesRawTasks("- hosts: all\n  tasks:\n    - shell: echo raw: no\n")).toBe(false);
  });
});
