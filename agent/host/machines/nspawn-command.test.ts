import { describe, expect, it } from "vitest";
import { EnvSpec } from "../../../proto/gen/protoctl/v1/types.js";
import { machineSpec } from "../../service/env-spec-check.js";
import { COMMAND_MODE_INIT, COMMAND_MODE_INIT_WITH_COMMAND, nspawnArgs } from "./nspawn-args.js";

describe("env command (an image's default) in nspawn's argv", () => {
  const base = {
    name: "e1",
    rootDir: "/r",
    boot: false,
    limits: {},
    env: {},
    network: { mode: "none" as const },
  };
  it("the init starts the command, argv as separate entries, with --chdir and --user", () => {
    const a = nspawnArgs({
      spec: { ...base, command: { argv: ["/bin/app", "--flag", "a b"], workdir: "/srv", user: "app" } },
      machine: "m",
    });
    expect(a.slice(-8)).toEqual([
      "--",
      "/bin/sh",
      "-c",
      COMMAND_MODE_INIT_WITH_COMMAND,
      "protoctl-init",
      "/bin/app",
      "--flag",
      "a b",
    ]);
    expect(a).toContain("--chdir=/srv");
    expect(a).toContain("--user=app");
  });
  it("boot mode ignores it; no command keeps the idle init", () => {
    const boot = nspawnArgs({
      spec: { ...base, boot: true, command: { argv: ["/x"], workdir: "/w" } },
      machine: "m",
    });
    expect(boot.at(-1)).toBe("--boot");
    expect(boot.some((w) => w.startsWith("--chdir"))).toBe(false);
    expect(nspawnArgs({ spec: base, machine: "m" }).at(-1)).toBe(COMMAND_MODE_INIT);
  });
  it("machineSpec: the command's env sits under the spec's own env", () => {
    const spec = EnvSpec.fromPartial({
      name: "e1",
      base: { name: "b" },
      env: { A: "spec" },
      command: { argv: ["/x"], workdir: "/w", user: "", env: { A: "image", B: "image" } },
    });
    const m = machineSpec(spec, "/r");
    expect(m.env).toEqual({ A: "spec", B: "image" });
    expect(m.command).toEqual({ argv: ["/x"], workdir: "/w", user: undefined });
    expect(machineSpec({ ...spec, boot: true }, "/r").command).toBeUndefined();
    expect(machineSpec({ ...spec, boot: true }, "/r").env).toEqual({ A: "spec" });
  });
});
