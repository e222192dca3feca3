import { describe, expect, it } from "vitest";
import { checkEnvCommand } from "./env-command.js";

describe("checkEnvCommand", () => {
  const ok = { argv: ["/bin/app"], workdir: "/srv", user: "app", env: { A: "1" } };
  it("accepts a plain command and refuses what cannot become argv safely", () => {
    expect(checkEnvCommand(ok)).toBe(ok);
    expect(checkEnvCommand({ ...ok, user: "1000" })).toBeTruthy();
    expect(() => checkEnvCommand({ ...ok, argv: ["a\0b"] })).toThrow(/NUL/);
    expect(() => checkEnvCommand({ ...ok, workdir: "srv" })).toThrow(/absolute/);
    expect(() => checkEnvCommand({ ...ok, workdir: "/srv/../etc" })).toThrow(/absolute/);
    expect(() => checkEnvCommand({ ...ok, user: "--boot" })).toThrow(/user/);
    expect(() => checkEnvCommand({ ...ok, user: "1000:1000" })).toThrow(/user/);
    expect(() => checkEnvCommand({ ...ok, env: { "A-B": "x" } })).toThrow(/variable/);
  });
});
