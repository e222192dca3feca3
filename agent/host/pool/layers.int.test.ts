/**
 * Layers on real btrfs + overlayfs + nspawn (busybox base): the upper is
 * exactly the recipe's diff, builds are cached per (base@N, digest), parents
 * stack, a new base version gets a new build, a failed recipe records nothing.
 */
import { lstat, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { silentLogger } from "../../../common/logger.js";
import { type BusyboxPool, busyboxPool } from "../../../test/fixtures/busybox-pool.js";
import type { LayerSpec } from "./layers.js";
import { findMount, mountsUnder } from "./mounts.js";
import { type BtrfsPool, openPool } from "./pool.js";

let stateDir: string;
let pool: BtrfsPool;

const enc = (s: string) => Buffer.from(s);
const shell = (
  name: string,
  script: string,
  parents: string[] = [],
  files: LayerSpec["files"] = [],
): LayerSpec => ({
  name,
  kind: "shell",
  main: enc(script),
  files,
  parents,
});

async function walk(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = `${prefix}${e.name}`;
    out.push(e.isCharacterDevice() ? `${rel} (whiteout)` : rel);
    if (e.isDirectory()) out.push(...(await walk(join(dir, e.name), `${rel}/`)));
  }
  return out.sort();
}

async function tmpLeftovers(): Promise<string[]> {
  const out: string[] = [];
  for (const area of ["@base", "@overlay", "@env", "@workdir", "@cache"]) {
    for (const e of await readdir(join(pool.mountpoint, area)))
      if (e.startsWith(".tmp-")) out.push(`${area}/${e}`);
  }
  return out;
}

let fixture: BusyboxPool | undefined;

beforeAll(async () => {
  fixture = await busyboxPool("protoctl-layers-");
  ({ pool, stateDir } = fixture);
});

afterAll(async () => {
  await fixture?.cleanup();
});

describe("layers", () => {
  it("builds a shell layer whose upper is exactly the recipe's diff", async () => {
    const logs: string[] = [];
    const m = await pool.buildLayer(
      shell(
        "tools",
        "set -e\ncat conf/app.conf > /etc/app.conf\nrm /bin/vi\necho built-it\n",
        [],
        [{ path: "conf/app.conf", content: enc("port=80\n"), mode: 0o644 }],
      ),
      "bb",
      1,
      (p) => p.log && logs.push(p.log),
    );
    expect(m).toMatchObject({ layer: "tools", base: "bb@1", kind: "shell", parents: [] });
    expect(logs.join("")).toContain("built-it");
    const upper = join(pool.mountpoint, "@overlay/tools", `bb@1.${m.digest.slice(0, 16)}`, "vol/upper");
    expect(await walk(upper)).toEqual(["bin", "bin/vi (whiteout)", "etc", "etc/app.conf"]);
    // cached: same recipe on the same base version is not rebuilt
    const again = await pool.buildLayer(
      shell(
        "tools",
        "set -e\ncat conf/app.conf > /etc/app.conf\nrm /bin/vi\necho built-it\n",
        [],
        [{ path: "conf/app.conf", content: enc("port=80\n"), mode: 0o644 }],
      ),
      "bb",
      1,
    );
    expect(again.builtMs).toBe(m.builtMs);
    expect(await mountsUnder(pool.mountpoint)).toEqual([]);
  });

  it("stacks parent layers in order, for builds and env roots", async () => {
    const child = await pool.buildLayer(
      shell("app", "set -e\ntest -f /etc/app.conf\necho child >> /etc/app.conf\necho 1 > /etc/app-ready\n", [
        "tools",
      ]),
      "bb",
      1,
    );
    expect(child.parents).toEqual(["tools"]);
    const env = await pool.prepareEnvRoot("stacked", "bb", 1, ["app"]);
    expect((await findMount(env.rootDir))?.fstype).toBe("overlay");
    expect(await readFile(join(env.rootDir, "etc/app.conf"), "utf8")).toBe("port=80\nchild\n");
    await expect(lstat(join(env.rootDir, "bin/vi"))).rejects.toThrow();
    await writeFile(join(env.rootDir, "etc/mine"), "env-write");
    expect(await readFile(join(pool.mountpoint, "@env/stacked/vol/upper/etc/mine"), "utf8")).toBe(
      "env-write",
    );
    // after a restart lost the mount, openEnvRoot mounts it again
    await pool.close();
    const { unmount } = await import("./mounts.js");
    await unmount(env.rootDir);
    const reopened = await openPool(
      { kind: "tmpfs", stateDir, sizeBytes: 384 * 1024 * 1024 },
      silentLogger(),
    );
    pool = reopened;
    expect((await pool.openEnvRoot("stacked"))?.layers).toEqual(["app"]);
    expect(await readFile(join(env.rootDir, "etc/mine"), "utf8")).toBe("env-write");
    await expect(pool.deleteLayer("tools")).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    await pool.removeEnvRoot("stacked");
    await pool.removeEnvRoot("stacked");
    expect(await mountsUnder(pool.mountpoint)).toEqual([]);
  });

  it("rebuilds layers on a new base version instead of reusing the old diff", async () => {
    await pool.updateBase("bb", ["/bin/sh", "-c", "echo 2 > /etc/base-version"], { network: false });
    const env = await pool.prepareEnvRoot("on2", "bb", 2, ["app"]);
    expect(await readFile(join(env.rootDir, "etc/base-version"), "utf8")).toBe("2\n");
    expect(await readFile(join(env.rootDir, "etc/app.conf"), "utf8")).toBe("port=80\nchild\n");
    const builds = (await pool.listLayerBuilds()).map((b) => `${b.layer}/${b.base}`).sort();
    expect(builds).toEqual(["app/bb@1", "app/bb@2", "tools/bb@1", "tools/bb@2"]);
    await expect(pool.deleteBaseVersion("bb", 2)).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      reason: "BASE_IN_USE",
      message: expect.stringMatching(/env\/on2.*layer\/app|layer\/app.*env\/on2/s),
    });
    await pool.removeEnvRoot("on2");
  });

  it("records nothing when the recipe fails and returns its output", async () => {
    const before = await pool.listLayerBuilds();
    const err = await pool
      .buildLayer(shell("broken", "echo partial > /etc/partial\necho 'it broke' >&2\nexit 7\n"), "bb", 1)
      .catch((e) => e);
    expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "RECIPE_FAILED" });
    expect(err.output).toContain("it broke");
    expect(await pool.listLayerBuilds()).toEqual(before);
    await expect(readdir(join(pool.mountpoint, "@overlay/broken"))).rejects.toThrow();
    expect(await tmpLeftovers()).toEqual([]);
    expect(await mountsUnder(pool.mountpoint)).toEqual([]);
  });

  it("refuses an Ansible layer on a base without python3", async () => {
    const err = await pool
      .buildLayer(
        { name: "ans", kind: "ansible", main: enc("- hosts: all\n  tasks: []\n"), files: [], parents: [] },
        "bb",
        1,
      )
      .catch((e) => e);
    expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BASE_NO_PYTHON" });
    expect(err.message).toBe("base bb@1 has no python3; Ansible layers need it");
    expect(err.hint).toContain("raw: apt-get update && apt-get install -y python3");
    expect(await tmpLeftovers()).toEqual([]);
  });

  it("runs an Ansible playbook that bootstraps with raw tasks on a base without python3", async () => {
    const play =
      "- hosts: all\n  gather_facts: false\n  tasks:\n    - raw: echo bootstrapped > /etc/raw-marker\n";
    const m = await pool.buildLayer(
      { name: "rawboot", kind: "ansible", main: enc(play), files: [], parents: [] },
      "bb",
      1,
    );
    expect(m).toMatchObject({ layer: "rawboot", base: "bb@1", kind: "ansible" });
    const env = await pool.prepareEnvRoot("rawenv", "bb", 1, ["rawboot"]);
    expect(await readFile(join(env.rootDir, "etc/raw-marker"), "utf8")).toBe("bootstrapped\n");
    await pool.removeEnvRoot("rawenv");
    await pool.deleteLayer("rawboot", "bb@1");
    expect(await tmpLeftovers()).toEqual([]);
  });

  it("rejects unknown parents and unsafe file paths", async () => {
    await expect(pool.buildLayer(shell("orphan", "true", ["ghost"]), "bb", 1)).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      reason: "LAYER_NOT_FOUND",
    });
    await expect(
      pool.buildLayer(
        shell("evil", "true", [], [{ path: "../../etc/x", content: enc(""), mode: 0o644 }]),
        "bb",
        1,
      ),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });

  it("snapshots a layered env into a new base version", async () => {
    const env = await pool.prepareEnvRoot("proto", "bb", 1, ["tools"]);
    await writeFile(join(env.rootDir, "etc/proto"), "made here");
    const m = await pool.snapshotEnvAsBase("proto", "protobase");
    expect(m).toMatchObject({ base: "protobase", version: 1, parent: "bb@1", source: "env:proto" });
    const root = join(pool.mountpoint, "@base/protobase@1/root");
    expect(await readFile(join(root, "etc/proto"), "utf8")).toBe("made here");
    expect(await readFile(join(root, "etc/app.conf"), "utf8")).toBe("port=80\n");
    await expect(lstat(join(root, "bin/vi"))).rejects.toThrow();
    await pool.removeEnvRoot("proto");
  });

  it("deletes a layer's builds, then the layer", async () => {
    await pool.deleteLayer("app", "bb@2");
    expect((await pool.listLayerBuilds()).filter((b) => b.layer === "app").map((b) => b.base)).toEqual([
      "bb@1",
    ]);
    await pool.deleteLayer("app");
    expect((await pool.listLayerBuilds()).some((b) => b.layer === "app")).toBe(false);
    expect(await tmpLeftovers()).toEqual([]);
  });
});
