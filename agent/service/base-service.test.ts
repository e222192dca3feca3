/** BaseService on the in-memory pool: names, listings, upload bounds, layers. */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { expectCode } from "../../test/contracts/expect-code.js";
import { FakePool } from "../../test/fakes/fake-pool.js";
import { BaseService } from "./base-service.js";

async function* bytes(...parts: string[]): AsyncIterable<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

describe("BaseService (fake pool)", () => {
  let dir: string;
  let pool: FakePool;
  let svc: BaseService;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-base-svc-"));
    pool = new FakePool();
    svc = new BaseService({
      pool,
      stateDir: dir,
      maxUploadBytes: 10,
      heldState: (b, v) => (b === "db" && v === 1 ? "attached" : "local"),
    });
  });
  afterEach(async () => {
    await pool.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("lists versions grouped by base, sorted, with the latest and how each is held", async () => {
    await svc.build("web", { debootstrap: { suite: "bookworm" } });
    await svc.build("db", { script: Buffer.from("true") });
    await svc.update("web", ["apt-get", "update"], { network: true });
    const groups = await svc.list();
    expect(groups.map((g) => [g.name, g.latest, g.versions.map((v) => [v.meta.version, v.held])])).toEqual([
      ["db", 1, [[1, "attached"]]],
      [
        "web",
        2,
        [
          [1, "local"],
          [2, "local"],
        ],
      ],
    ]);
    expect((await svc.list("web")).map((g) => g.name)).toEqual(["web"]);
    // the versions deleted, not the ones left
    expect((await svc.deleteVersion("web", 1)).map((m) => m.version)).toEqual([1]);
    expect((await svc.list("web"))[0]?.versions.map((v) => v.meta.version)).toEqual([2]);
    // the whole base: every version it still had
    expect((await svc.deleteVersion("web", 0)).map((m) => m.version)).toEqual([2]);
    expect((await svc.list()).map((g) => g.name)).toEqual(["db"]);
  });

  it("refuses bad names and a build without a spec, changing nothing", async () => {
    await expectCode(svc.build("web", undefined), Code.INVALID_ARGUMENT, "BUILD_SPEC_REQUIRED");
    await expectCode(() => svc.build("../x", { script: Buffer.from("") }), Code.INVALID_ARGUMENT);
    await expectCode(() => svc.update("Bad Name", [], { network: false }), Code.INVALID_ARGUMENT);
    await expectCode(() => svc.deleteVersion(undefined, 1), Code.INVALID_ARGUMENT);
    await expectCode(() => svc.import("a/b", { dir: "/x" }), Code.INVALID_ARGUMENT);
    expect(await svc.list()).toEqual([]);
  });

  it("keeps an upload within its bound in a temp file, and removes it when discarded", async () => {
    const path = await svc.receiveUpload("web", "zstd", bytes("12345", "6789"));
    expect(path.startsWith(join(dir, "uploads", "web-"))).toBe(true);
    expect(path.endsWith(".tar.zst")).toBe(true);
    expect(await readFile(path, "utf8")).toBe("123456789");
    const meta = await svc.import("web", { tar: path });
    expect(meta.source).toBe(`tar:${path}`);
    await svc.discardUpload(path);
    expect(existsSync(path)).toBe(false);
  });

  it("refuses an upload over its bound or of an unknown compression, leaving no file", async () => {
    await expectCode(
      svc.receiveUpload("web", "", bytes("123456", "789012")),
      Code.RESOURCE_EXHAUSTED,
      "UPLOAD_TOO_LARGE",
    );
    await expectCode(svc.receiveUpload("web", "lz4", bytes("1")), Code.INVALID_ARGUMENT);
    expect(await readdir(join(dir, "uploads"))).toEqual([]);
    // no bound given: the pool's size
    const open = new BaseService({ pool, stateDir: dir });
    await svc.discardUpload(await open.receiveUpload("web", "gzip", bytes("x".repeat(100))));
  });

  it("builds layers on a base version, lists and deletes them by name", async () => {
    await svc.build("web", { script: Buffer.from("true") });
    const spec = {
      name: "tools",
      kind: "shell" as const,
      main: Buffer.from("echo hi"),
      files: [],
      parents: [],
    };
    const built = await svc.buildLayer(spec, "web", 0);
    expect(built).toMatchObject({ layer: "tools", base: "web@1" });
    expect(await svc.buildLayer(spec, "web", 1)).toEqual(built);
    await expectCode(() => svc.buildLayer({ ...spec, name: "Bad" }, "web", 1), Code.INVALID_ARGUMENT);
    await expectCode(() => svc.buildLayer(spec, undefined, 1), Code.INVALID_ARGUMENT);
    expect((await svc.listLayers()).map((l) => l.layer)).toEqual(["tools"]);
    await svc.deleteLayer("tools", "");
    expect(await svc.listLayers()).toEqual([]);
  });
});
