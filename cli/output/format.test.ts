import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { Env, EnvPhase, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import { envList } from "./columns.js";
import { age, bytes, enumLabel, renderList, renderTable } from "./format.js";

function env(name: string, phase: EnvPhase, node: string): Env {
  return Env.fromPartial({
    spec: {
      name,
      base: { name: "busybox", version: 0 },
      layers: ["tools"],
      network: { mode: NetworkMode.NETWORK_MODE_PRIVATE },
      env: { A: "1" },
    },
    status: { phase, node, baseVersion: 2, createdMs: Date.now() - 120_000, addresses: ["10.0.0.2"] },
  });
}

const envs = [env("web-1", EnvPhase.ENV_PHASE_RUNNING, "n1"), env("db", EnvPhase.ENV_PHASE_STOPPED, "n2")];

describe("renderList", () => {
  it("table: header and aligned rows, no wide columns", async () => {
    const out = await renderList(envs, envList, { output: "table" });
    const lines = out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+STATUS\s+BASE\s+NODE\s+AGE\s+TTL$/);
    expect(lines[1]).toMatch(/^web-1\s+Running\s+busybox@2\s+n1\s+2m\s+-$/);
    expect(lines[2]).toMatch(/^db\s+Stopped\s+busybox@2\s+n2\s+2m\s+-$/);
    // columns line up: STATUS starts at the same offset on every line
    const col = lines[0]!.indexOf("STATUS");
    expect(lines[1]!.indexOf("Running")).toBe(col);
    expect(out).not.toContain("LAYERS");
  });

  it("wide adds the wide columns", async () => {
    const out = await renderList(envs, envList, { output: "wide" });
    expect(out.split("\n")[0]).toMatch(/LAYERS\s+NETWORK\s+ADDRESSES\s+BOOT\s+MESSAGE$/);
    expect(out).toContain("10.0.0.2");
    expect(out).toContain("Private");
  });

  it("json round-trips through Env.fromJSON", async () => {
    const out = await renderList(envs, envList, { output: "json" });
    const parsed = JSON.parse(out) as unknown[];
    expect(parsed.map((j) => Env.fromJSON(j))).toEqual(envs);
  });

  it("yaml round-trips through Env.fromJSON", async () => {
    const out = await renderList(envs, envList, { output: "yaml" });
    const parsed = parseYaml(out) as unknown[];
    expect(parsed.map((j) => Env.fromJSON(j))).toEqual(envs);
  });

  it("-q prints names only, whatever the format", async () => {
    expect(await renderList(envs, envList, { quiet: true })).toBe("web-1\ndb\n");
    expect(await renderList(envs, envList, { quiet: true, output: "json" })).toBe("web-1\ndb\n");
  });

  it("empty lists: header only for tables, [] for json, valid yaml", async () => {
    expect(await renderList([], envList, { output: "table" })).toBe(
      "NAME   STATUS   BASE   NODE   AGE   TTL\n",
    );
    expect(JSON.parse(await renderList([], envList, { output: "json" }))).toEqual([]);
    expect(parseYaml(await renderList([], envList, { output: "yaml" }))).toEqual([]);
    expect(await renderList([], envList, { quiet: true })).toBe("");
  });

  it("rejects an unknown format with a hint", async () => {
    await expect(renderList(envs, envList, { output: "xml" })).rejects.toMatchObject({
      code: 3,
      hint: "use -o table|wide|json|yaml",
    });
  });
});

describe("helpers", () => {
  it("renderTable has no trailing spaces", () => {
    expect(renderTable(["A", "B"], [["x", ""]])).toBe("A   B\nx\n");
  });
  it("age", () => {
    const now = 1_000_000_000;
    expect(age(0, now)).toBe("-");
    expect(age(now - 5_000, now)).toBe("5s");
    expect(age(now - 3 * 3600_000, now)).toBe("3h");
    expect(age(now - 2 * 86400_000, now)).toBe("2d");
  });
  it("bytes", () => {
    expect(bytes(0)).toBe("-");
    expect(bytes(512)).toBe("512B");
    expect(bytes(1536)).toBe("1.5K");
    expect(bytes(8 * 1024 ** 3)).toBe("8.0G");
    expect(bytes(20 * 1024 ** 2)).toBe("20M");
  });
  it("enumLabel", () => {
    expect(enumLabel("ENV_PHASE_RUNNING", "ENV_PHASE_")).toBe("Running");
    expect(enumLabel("NODE_STATE_NOT_READY", "NODE_STATE_")).toBe("NotReady");
    expect(enumLabel("ENV_PHASE_UNSPECIFIED", "ENV_PHASE_")).toBe("-");
  });
});
