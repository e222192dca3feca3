import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCliConfig, resolveContext, toYaml } from "../config/contexts.js";
import { fastContext } from "./context.js";

let dir: string;
let config: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-fast-ctx-"));
  await writeFile(join(dir, "ca.pem"), "CA FROM FILE");
  config = join(dir, "config.yaml");
  await writeFile(
    config,
    toYaml({
      currentContext: "inline",
      contexts: {
        inline: {
          controller: "grpcs://10.0.0.1:7443",
          caData: "CA",
          certData: "CERT",
          keyData: "KEY",
          serverName: "protoctl-controller",
        },
        files: { controller: "h:1", ca: join(dir, "ca.pem"), certData: "C", keyData: "K" },
        plain: { controller: "127.0.0.1:9", insecure: true },
        broken: { controller: "h:2", ca: join(dir, "missing.pem") },
      },
    }),
  );
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** What the full CLI resolves and connects with (contexts.ts + connect.ts). */
async function full(env: NodeJS.ProcessEnv) {
  const ctx = resolveContext(await loadCliConfig(env.PROTOCTL_CONFIG), undefined, env);
  const { connect } = await import("../client/connect.js");
  const api = await connect(ctx);
  const creds = (api as unknown as { creds: Record<string, Buffer | undefined> }).creds;
  api.close();
  return {
    address: api.address,
    insecure: !!ctx.insecure,
    serverName: ctx.serverName,
    ca: creds.ca,
    cert: creds.cert,
    key: creds.key,
  };
}

describe("the fast entry reads the context as the full CLI does", () => {
  it.each([
    [{}],
    [{ PROTOCTL_CONTEXT: "files" }],
    [{ PROTOCTL_CONTEXT: "plain" }],
    [{ PROTOCTL_CONTEXT: "inline", PROTOCTL_CONTROLLER: "127.0.0.1:1" }],
  ])("%o", async (extra) => {
    const env = { PROTOCTL_CONFIG: config, ...extra };
    const fast = fastContext(env);
    const want = await full(env);
    expect(fast).toEqual(
      Object.fromEntries(Object.entries(want).filter(([k, v]) => v !== undefined || k === "serverName")),
    );
  });

  it("leaves the cases the full CLI reports or defaults to it", async () => {
    expect(fastContext({ PROTOCTL_CONFIG: config, PROTOCTL_CONTEXT: "nope" })).toBeUndefined();
    expect(fastContext({ PROTOCTL_CONFIG: config, PROTOCTL_CONTEXT: "broken" })).toBeUndefined();
    expect(fastContext({ PROTOCTL_CONFIG: join(dir, "none.yaml") })).toBeUndefined();
    await expect(full({ PROTOCTL_CONFIG: config, PROTOCTL_CONTEXT: "broken" })).rejects.toThrow(
      /cannot read/,
    );
  });
});
