import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig, parseSize } from "./config.js";
import { Code, type ProtoctlError } from "./errors.js";

const defaults = {
  listen: "127.0.0.1:7444",
  insecure: false,
  labels: [] as string[],
  pool: { kind: "tmpfs", sizeBytes: 1024 },
};

const made: string[] = [];
/** A scratch dir for one test, removed after it. */
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "protoctl-cfg-"));
  made.push(d);
  return d;
}
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("loadConfig", () => {
  it("layers defaults < file < env < flags", () => {
    const dir = tempDir();
    const file = join(dir, "agent.yaml");
    writeFileSync(file, "listen: 0.0.0.0:1\npool:\n  kind: file\n  sizeBytes: 2G\n");
    const cfg = loadConfig(defaults, {
      file,
      envPrefix: "PROTOCTL_AGENT",
      env: {
        PROTOCTL_AGENT_POOL_KIND: "mount",
        PROTOCTL_AGENT_INSECURE: "true",
        PROTOCTL_AGENT_LABELS: "a=1, b=2",
      },
      flags: { "pool.kind": "tmpfs", listen: undefined },
    });
    expect(cfg.listen).toBe("0.0.0.0:1");
    expect(cfg.pool.sizeBytes).toBe(2 * 2 ** 30);
    expect(cfg.pool.kind).toBe("tmpfs");
    expect(cfg.insecure).toBe(true);
    expect(cfg.labels).toEqual(["a=1", "b=2"]);
    expect(defaults.pool.kind).toBe("tmpfs");
  });

  it("rejects unknown keys and bad values with INVALID_ARGUMENT", () => {
    const dir = tempDir();
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "nope: 1\n");
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as ProtoctlError).code;
      }
    };
    expect(code(() => loadConfig(defaults, { file }))).toBe(Code.INVALID_ARGUMENT);
    expect(code(() => loadConfig(defaults, { flags: { "pool.sizeBytes": "lots" } }))).toBe(
      Code.INVALID_ARGUMENT,
    );
    expect(code(() => loadConfig(defaults, { flags: { "pool.colour": "red" } }))).toBe(Code.INVALID_ARGUMENT);
    expect(code(() => loadConfig(defaults, { file: join(dir, "missing.yaml"), fileRequired: true }))).toBe(
      Code.INVALID_ARGUMENT,
    );
    expect(loadConfig(defaults, { file: join(dir, "missing.yaml") }).listen).toBe(defaults.listen);
  });

  it("parses sizes", () => {
    expect(parseSize("512M")).toBe(512 * 2 ** 20);
    expect(parseSize("1.5GiB")).toBe(1.5 * 2 ** 30);
    expect(parseSize("100")).toBe(100);
    expect(parseSize("12 parsecs")).toBeUndefined();
  });
});
