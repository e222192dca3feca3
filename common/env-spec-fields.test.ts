import { describe, expect, it } from "vitest";
import { EnvSpec } from "../proto/gen/protoctl/v1/types.js";
import { checkSpecFields, filePath } from "./env-spec-fields.js";

const spec = (over: Partial<EnvSpec>) => ({
  ...EnvSpec.fromPartial({ name: "e", base: { name: "b" } }),
  ...over,
});
const resources = (r: { memoryBytes?: number; cpus?: number; pids?: number; diskBytes?: number }) =>
  spec({ resources: { memoryBytes: 0, cpus: 0, pids: 0, diskBytes: 0, ...r } });

describe("checkSpecFields", () => {
  it("accepts a plain spec and limits at their bounds", () => {
    expect(() => checkSpecFields(spec({}))).not.toThrow();
    expect(() =>
      checkSpecFields(resources({ memoryBytes: 8 * 2 ** 20, cpus: 1024, pids: 0, diskBytes: 2 ** 20 })),
    ).not.toThrow();
    expect(() => checkSpecFields(spec({ hostname: "web-1.lab", env: { A_1: "x" } }))).not.toThrow();
  });

  it("refuses limits out of range, with the reason the agent gives", () => {
    for (const [r, msg] of [
      [{ memoryBytes: 8 * 2 ** 20 - 1 }, "memory limit below 8 MiB"],
      [{ cpus: -1 }, "cpus out of range"],
      [{ cpus: 1025 }, "cpus out of range"],
      [{ cpus: Number.NaN }, "cpus out of range"],
      [{ pids: -1 }, "pids out of range"],
      [{ diskBytes: 2 ** 20 - 1 }, "disk limit below 1 MiB"],
    ] as const) {
      expect(() => checkSpecFields(resources(r))).toThrow(msg);
    }
    try {
      checkSpecFields(resources({ memoryBytes: 1 }));
    } catch (err) {
      expect(err).toMatchObject({ reason: "INVALID_RESOURCES" });
    }
  });

  it("refuses bad hostnames, variable names, NUL bytes, escaping or oversized files", () => {
    expect(() => checkSpecFields(spec({ hostname: "-x" }))).toThrow(/invalid hostname/);
    expect(() => checkSpecFields(spec({ env: { "1X": "y" } }))).toThrow(/variable name/);
    expect(() => checkSpecFields(spec({ env: { X: "a\0b" } }))).toThrow(/NUL/);
    expect(() => checkSpecFields(spec({ startup: ["a\0"] }))).toThrow(/NUL/);
    const file = (path: string, bytes = 1) => ({ path, content: Buffer.alloc(bytes), mode: 0 });
    expect(() => checkSpecFields(spec({ files: [file("../etc/x")] }))).toThrow(/plain path/);
    expect(() => checkSpecFields(spec({ files: [file("etc/x", 16 * 2 ** 20 + 1)] }))).toThrow(/16 MiB/);
    expect(() => checkSpecFields(spec({ files: [file("/etc/app.conf")] }))).not.toThrow();
  });

  it("normalizes a file path inside the env", () => {
    expect(filePath("/etc/app.conf")).toBe("etc/app.conf");
    expect(() => filePath("etc/dir/")).toThrow(/plain path/);
    expect(() => filePath("/")).toThrow(/invalid file path/);
    expect(() => filePath("a/../../b")).toThrow(/plain path/);
  });
});
