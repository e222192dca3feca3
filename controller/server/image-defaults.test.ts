import { describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import type { Base, BaseVersion, EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { Keys } from "../store/keys.js";
import type { Versioned } from "../store/kv.js";
import { commandOfImage, ImageDefaults } from "./image-defaults.js";

describe("commandOfImage", () => {
  it("turns Entrypoint + Cmd into the env command; nothing without them", () => {
    const image = { env: { A: "1" }, workingDir: "/w", user: "", entrypoint: ["/e"], cmd: ["x"] };
    expect(commandOfImage(image)).toEqual({ argv: ["/e", "x"], workdir: "/w", user: "", env: { A: "1" } });
    expect(commandOfImage({ ...image, entrypoint: [], cmd: [] })).toBeUndefined();
    expect(commandOfImage(undefined)).toBeUndefined();
  });
});

/** A store with base records and versions in memory, counting its reads. */
function memoryBases() {
  const keys = new Keys("/t/");
  const records = new Map<string, Versioned<Base>>();
  const versions = new Map<string, Versioned<BaseVersion>[]>();
  let rev = 10;
  const reads = { n: 0 };
  const seal = (base: string, version: number, cmd: string[]) => {
    const v = { base, version, image: { env: {}, workingDir: "", user: "", entrypoint: [], cmd } };
    const list = versions.get(base) ?? [];
    list.push({
      key: keys.baseVersion(base, version),
      value: v as unknown as BaseVersion,
      modRevision: ++rev,
      createRevision: rev,
      lease: "0",
    });
    versions.set(base, list);
    const value = { name: base, versions: [], latest: version } as unknown as Base;
    records.set(base, { key: keys.base(base), value, modRevision: ++rev, createRevision: rev, lease: "0" });
  };
  const store = {
    keys,
    bases: {
      get: async (n: string) => {
        reads.n++;
        return records.get(n);
      },
    },
    listBaseVersions: async (n: string) => [...(versions.get(n) ?? [])],
  } as unknown as ConstructorParameters<typeof ImageDefaults>[0];
  return { store, seal, reads, keys, records };
}

const spec = (over: Partial<EnvSpec>) => ({ name: "e", start: true, layers: [], ...over }) as EnvSpec;

describe("ImageDefaults", () => {
  it("lends the pinned or latest version's command, reading a base once, guarded by what it read", async () => {
    const m = memoryBases();
    m.seal("alpine", 1, ["/one"]);
    m.seal("alpine", 2, ["/two"]);
    const d = new ImageDefaults(m.store);
    const latest = await d.apply(spec({ base: { name: "alpine", version: 0 } }));
    expect(latest.spec.command?.argv).toEqual(["/two"]);
    expect(latest.guards).toEqual([
      { key: m.keys.base("alpine"), modRevision: m.records.get("alpine")!.modRevision },
      { key: m.keys.baseVersion("alpine", 2), modRevision: 13 },
    ]);
    const pinned = await d.apply(spec({ base: { name: "alpine", version: 1 } }));
    expect(pinned.spec.command?.argv).toEqual(["/one"]);
    expect(pinned.guards).toEqual([{ key: m.keys.baseVersion("alpine", 1), modRevision: 11 }]);
    expect(m.reads.n).toBe(1);
    // a new seal: the old guard no longer holds in etcd; the caller asks again with fresh
    m.seal("alpine", 3, ["/three"]);
    expect((await d.apply(spec({ base: { name: "alpine", version: 0 } }))).spec.command?.argv).toEqual([
      "/two",
    ]);
    const again = await d.apply(spec({ base: { name: "alpine", version: 0 } }), true);
    expect(again.spec.command?.argv).toEqual(["/three"]);
    expect(m.reads.n).toBe(2);
  });

  it("leaves boot envs and envs with a command alone (their base read once, no guards)", async () => {
    const m = memoryBases();
    m.seal("x", 1, ["/image"]);
    const d = new ImageDefaults(m.store);
    const boot = await d.apply(spec({ base: { name: "x", version: 0 }, boot: true }));
    const own = { argv: ["/mine"], workdir: "", user: "", env: {} };
    const cmd = await d.apply(spec({ base: { name: "x", version: 1 }, command: own }));
    expect([boot.guards, boot.spec.command, cmd.guards, cmd.spec.command]).toEqual([[], undefined, [], own]);
    expect(m.reads.n).toBe(1);
  });

  it("refuses a base or version the cluster has no record of (NOT_FOUND), after reading it again", async () => {
    const m = memoryBases();
    m.seal("alpine", 1, ["/one"]);
    const d = new ImageDefaults(m.store);
    const own = { argv: ["/mine"], workdir: "", user: "", env: {} };
    for (const s of [
      spec({ base: { name: "nope", version: 0 } }),
      spec({ base: { name: "nope", version: 0 }, boot: true }),
      spec({ base: { name: "nope", version: 0 }, command: own }),
    ]) {
      await expect(d.apply(s)).rejects.toMatchObject({
        code: Code.NOT_FOUND,
        message: "no base named nope",
        reason: "BASE_NOT_FOUND",
        subject: "base/nope",
      });
    }
    await expect(d.apply(spec({ base: { name: "alpine", version: 4 } }))).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      message: "no base named alpine@4",
      subject: "base/alpine",
    });
    // a remembered read that lacks the version is read again: a version sealed since is found
    const before = m.reads.n;
    m.seal("alpine", 4, ["/four"]);
    const four = await d.apply(spec({ base: { name: "alpine", version: 4 } }));
    expect(four.spec.command?.argv).toEqual(["/four"]);
    expect(m.reads.n).toBe(before + 1);
    m.seal("nope", 1, ["/n"]);
    expect((await d.apply(spec({ base: { name: "nope", version: 0 } }))).spec.command?.argv).toEqual(["/n"]);
  });
});
