/**
 * Layer rebases on real btrfs + overlayfs + nspawn (busybox base, an Ansible
 * playbook of `raw` tasks): a base update that does not meet the layer
 * rebases the build (the playbook runs again on the old upper), one that
 * touches a file the layer wrote builds from scratch, shell layers are never
 * rebased, and nothing is left behind.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../../common/exec.js";
import { type BusyboxPool, busyboxPool } from "../../../test/fixtures/busybox-pool.js";
import type { LayerSpec } from "./layers.js";
import { mountsUnder } from "./mounts.js";
import type { BtrfsPool } from "./pool.js";

let pool: BtrfsPool;

// `runs` grows by one line per run of the playbook: two lines prove it ran again on the old upper
const PLAYBOOK = `- hosts: all
  gather_facts: false
  tasks:
    - raw: mkdir -p /srv/web && echo layer > /srv/web/index && echo layer > /etc/shared.conf && echo run >> /srv/web/runs
`;
const web: LayerSpec = { name: "web", kind: "ansible", main: Buffer.from(PLAYBOOK), files: [], parents: [] };
const tools: LayerSpec = {
  name: "tools",
  kind: "shell",
  main: Buffer.from("echo run >> /etc/tool-runs\n"),
  files: [],
  parents: [],
};

async function inEnv(name: string, version: number, layers: string[], files: string[]): Promise<string[]> {
  const env = await pool.prepareEnvRoot(name, "bb", version, layers);
  try {
    return await Promise.all(files.map((f) => readFile(join(env.rootDir, f), "utf8")));
  } finally {
    await pool.removeEnvRoot(name);
  }
}

async function subvolumes(): Promise<string[]> {
  const r = await run("btrfs", ["subvolume", "list", pool.mountpoint]);
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => l.slice(l.indexOf(" path ") + 6))
    .sort();
}

let fixture: BusyboxPool | undefined;

beforeAll(async () => {
  fixture = await busyboxPool("protoctl-rebase-");
  ({ pool } = fixture);
});

afterAll(async () => {
  await fixture?.cleanup();
});

describe("layer rebase", () => {
  it("builds from scratch when there is no earlier build", async () => {
    const m = await pool.buildLayer(web, "bb", 1);
    expect(m).toMatchObject({ base: "bb@1", from: "scratch" });
    expect(await pool.buildLayer(tools, "bb", 1)).toMatchObject({ from: "scratch" });
  });

  it("rebases onto a base update that does not meet the layer, and runs the playbook again", async () => {
    const v2 = await pool.updateBase("bb", ["/bin/sh", "-c", "echo 2 > /etc/base-new && mkdir -p /opt/b2"], {
      network: false,
    });
    expect(v2.version).toBe(2);
    const logs: string[] = [];
    const m = await pool.buildLayer(web, "bb", 2, (p) => p.message && logs.push(p.message));
    expect(m).toMatchObject({ base: "bb@2", from: "rebased from bb@1" });
    expect(logs).toContain("rebasing the build on bb@1");
    const [index, runs, baseNew, shared] = await inEnv(
      "on2",
      2,
      ["web"],
      ["srv/web/index", "srv/web/runs", "etc/base-new", "etc/shared.conf"],
    );
    expect({ index, runs, baseNew, shared }).toEqual({
      index: "layer\n",
      runs: "run\nrun\n",
      baseNew: "2\n",
      shared: "layer\n",
    });
    // a shell recipe is not idempotent in general: always from scratch
    expect(await pool.buildLayer(tools, "bb", 2)).toMatchObject({ base: "bb@2", from: "scratch" });
    expect(await inEnv("tools2", 2, ["tools"], ["etc/tool-runs"])).toEqual(["run\n"]);
  });

  it("builds from scratch when the base update changes a file the layer wrote", async () => {
    await pool.updateBase(
      "bb",
      ["/bin/sh", "-c", "echo base3 > /etc/shared.conf && echo 3 > /etc/base-new && echo 3 > /etc/base-only"],
      { network: false },
    );
    const logs: string[] = [];
    const m = await pool.buildLayer(web, "bb", 3, (p) => p.message && logs.push(p.message));
    expect(m).toMatchObject({ base: "bb@3", from: "scratch" });
    expect(logs).toContain(
      "no rebase from bb@2: /etc/shared.conf changed in the base and the layer holds it (other)",
    );
    const [runs, shared, baseNew, baseOnly] = await inEnv(
      "on3",
      3,
      ["web"],
      ["srv/web/runs", "etc/shared.conf", "etc/base-new", "etc/base-only"],
    );
    // the layer's content where it wrote, the base's new content everywhere else
    expect({ runs, shared, baseNew, baseOnly }).toEqual({
      runs: "run\n",
      shared: "layer\n",
      baseNew: "3\n",
      baseOnly: "3\n",
    });
  });

  it("leaves no subvolume, mount or scratch file behind", async () => {
    const builds = (await pool.listLayerBuilds()).map((b) => `${b.layer}/${b.base}/${b.from}`).sort();
    expect(builds).toEqual([
      "tools/bb@1/scratch",
      "tools/bb@2/scratch",
      "web/bb@1/scratch",
      "web/bb@2/rebased from bb@1",
      "web/bb@3/scratch",
    ]);
    await pool.deleteLayer("web");
    await pool.deleteLayer("tools");
    await run("btrfs", ["subvolume", "sync", pool.mountpoint]);
    // the pool's areas and the three base versions stay; no build, env or staging subvolume does
    const vols = await subvolumes();
    expect(vols).toEqual(expect.arrayContaining(["@base/bb@1/root", "@base/bb@2/root", "@base/bb@3/root"]));
    expect(vols.filter((v) => v.includes("/") && !/^@base\/bb@[123]\/root$/.test(v))).toEqual([]);
    expect(await readdir(join(pool.mountpoint, "@workdir"))).toEqual([]);
    expect(await readdir(join(pool.mountpoint, "@overlay"))).toEqual([]);
    expect(await mountsUnder(pool.mountpoint)).toEqual([]);
  });
});
