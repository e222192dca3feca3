import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  configPath,
  DEFAULT_CONTROLLER,
  isLocalAddress,
  loadCliConfig,
  resolveContext,
  saveCliConfig,
} from "./contexts.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-ctx-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("config file location", () => {
  it("PROTOCTL_CONFIG, then XDG_CONFIG_HOME, then ~/.config", () => {
    expect(configPath({ PROTOCTL_CONFIG: "/x.yaml", XDG_CONFIG_HOME: "/c" })).toBe("/x.yaml");
    expect(configPath({ XDG_CONFIG_HOME: "/c" })).toBe("/c/protoctl/config.yaml");
    expect(configPath({ HOME: "/home/u" })).toBe("/home/u/.config/protoctl/config.yaml");
  });
});

describe("contexts", () => {
  it("saves with mode 0600 and loads back", async () => {
    const path = join(dir, "protoctl/config.yaml");
    await saveCliConfig(
      {
        currentContext: "local",
        contexts: {
          local: {
            controller: "127.0.0.1:7443",
            caData: "-----BEGIN-----\nx\n",
            certData: "c",
            keyData: "k",
          },
          lab: { controller: "10.1.1.1:7443", insecure: true, upload: true },
        },
      },
      path,
    );
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const cfg = await loadCliConfig(path);
    expect(cfg.currentContext).toBe("local");
    expect(cfg.contexts.local).toEqual({
      controller: "127.0.0.1:7443",
      caData: "-----BEGIN-----\nx\n",
      certData: "c",
      keyData: "k",
    });
    expect(cfg.contexts.lab).toEqual({ controller: "10.1.1.1:7443", insecure: true, upload: true });
    expect(await readFile(path, "utf8")).toContain("current-context: local");
  });

  it("reads hand-written YAML outside the fast subset", async () => {
    const path = join(dir, "c.yaml");
    await writeFile(path, "current-context: a\ncontexts: {a: {controller: 'h:1', insecure: true}}\n");
    expect(await loadCliConfig(path)).toEqual({
      currentContext: "a",
      contexts: { a: { controller: "h:1", insecure: true } },
    });
  });

  it("a missing file is an empty config; a broken one is a usage error with a hint", async () => {
    expect(await loadCliConfig(join(dir, "none.yaml"))).toEqual({ contexts: {} });
    const path = join(dir, "bad.yaml");
    await writeFile(path, "contexts: [\n");
    await expect(loadCliConfig(path)).rejects.toMatchObject({ code: 3, reason: "CONFIG_INVALID" });
    await writeFile(path, "contexts:\n  x:\n    insecure: true\n");
    await expect(loadCliConfig(path)).rejects.toMatchObject({ reason: "CONFIG_INVALID" });
  });

  it("--context beats PROTOCTL_CONTEXT beats current-context; PROTOCTL_CONTROLLER overrides the address", () => {
    const cfg = {
      currentContext: "a",
      contexts: {
        a: { controller: "a:1" },
        b: { controller: "b:1" },
        c: { controller: "c:1", insecure: true },
      },
    };
    expect(resolveContext(cfg, undefined, {}).controller).toBe("a:1");
    expect(resolveContext(cfg, undefined, { PROTOCTL_CONTEXT: "b" }).controller).toBe("b:1");
    expect(resolveContext(cfg, "c", { PROTOCTL_CONTEXT: "b" })).toMatchObject({
      name: "c",
      controller: "c:1",
    });
    expect(resolveContext(cfg, "c", { PROTOCTL_CONTROLLER: "z:9" })).toMatchObject({
      name: "c",
      controller: "z:9",
      insecure: true,
      source: "env",
    });
  });

  it("no config: the default local address; unknown context: not found with the known names", () => {
    expect(resolveContext({ contexts: {} }, undefined, {})).toMatchObject({
      controller: DEFAULT_CONTROLLER,
      source: "default",
    });
    expect(() => resolveContext({ contexts: { a: { controller: "x" } } }, "nope", {})).toThrow(
      expect.objectContaining({ code: 5, hint: expect.stringContaining("known contexts: a") }),
    );
  });

  it("isLocalAddress", () => {
    expect(isLocalAddress("127.0.0.1:7443")).toBe(true);
    expect(isLocalAddress("localhost:1")).toBe(true);
    expect(isLocalAddress("[::1]:1")).toBe(true);
    expect(isLocalAddress("10.0.0.1:7443")).toBe(false);
    expect(isLocalAddress("ctl.example:7443")).toBe(false);
  });
});
