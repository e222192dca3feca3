import { describe, expect, it } from "vitest";
import { buildProgram } from "../program.js";
import { complete, FILES, formatCandidates } from "./complete.js";

const names = async (kind: string) => ({ env: ["web-1", "db"], base: ["busybox"], node: ["n1"] })[kind] ?? [];

async function values(words: string[]): Promise<string[]> {
  const root = await buildProgram([], "0", true);
  return (await complete(root, words, names as never)).map((c) => c.value);
}

describe("completion", () => {
  it("top-level commands, without hidden ones", async () => {
    const v = await values([""]);
    expect(v).toEqual(expect.arrayContaining(["up", "down", "env", "base", "node", "completion", "agent"]));
    expect(v).not.toContain("supervise");
    expect(v).not.toContain("__complete");
  });
  it("subcommands of a group", async () => {
    expect(await values(["env", ""])).toEqual(
      expect.arrayContaining(["create", "ls", "exec", "shell", "logs", "rm"]),
    );
  });
  it("env names for env verbs, none for create", async () => {
    expect(await values(["env", "exec", ""])).toEqual(["web-1", "db"]);
    expect(await values(["env", "rm", "web-1", ""])).toEqual(["web-1", "db"]);
    expect(await values(["env", "create", ""])).toEqual([]);
    expect(await values(["env", "exec", "web-1", "--", ""])).toEqual([]);
  });
  it("flag names and flag values", async () => {
    expect(await values(["env", "create", "x", "--"])).toEqual(
      expect.arrayContaining(["--base", "--layer", "--memory", "--context"]),
    );
    expect(await values(["env", "create", "x", "--base", ""])).toEqual(["busybox"]);
    expect(await values(["env", "create", "x", "--node", ""])).toEqual(["n1"]);
    expect(await values(["env", "ls", "-o", ""])).toEqual(["table", "wide", "json", "yaml"]);
    expect(await values(["env", "create", "x", "--network", ""])).toEqual([
      "none",
      "host",
      "private",
      "bridge:",
    ]);
    expect(await values(["base", "import", "x", "--dir", ""])).toEqual([FILES]);
    expect(await values(["node", "cordon", ""])).toEqual(["n1"]);
    expect(await values(["completion", ""])).toEqual(["bash", "zsh"]);
  });
  it("skips option values while walking", async () => {
    expect(await values(["--context", "x", "env", "describe", ""])).toEqual(["web-1", "db"]);
  });
  it("formats value<TAB>description", () => {
    expect(formatCandidates([{ value: "a", description: "first\nsecond" }, { value: "b" }])).toBe(
      "a\tfirst\nb\n",
    );
  });
});
