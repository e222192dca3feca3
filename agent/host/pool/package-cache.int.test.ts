/**
 * The node's package cache on a real pool: a Debian base (the cached
 * debootstrap rootfs, test/fixtures/debian-rootfs.ts), a shell layer that runs
 * `apt-get update` and installs a small package from the Debian mirror, then
 * a new base version (a trivial `base update`) and the same layer rebuilt on
 * it: the rebuild downloads nothing (apt says "Need to get 0 B") and the
 * cached archive is the same file, untouched. The layer's diff holds neither
 * the archives nor the lists, and no build copy is left behind.
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../common/logger.js";
import { cachedDebianRootfs } from "../../../test/fixtures/debian-rootfs.js";
import { type BtrfsPool, openPool } from "./pool.js";

let stateDir: string;
let pool: BtrfsPool;

beforeAll(async () => {
  const rootfs = await cachedDebianRootfs();
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-pkgcache-"));
  pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 1536 * 2 ** 20 }, silentLogger());
  await pool.importBase("deb", { dir: rootfs });
}, 900_000);

afterAll(async () => {
  await pool?.destroy();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 120_000);

const RECIPE = "apt-get update && apt-get install -y --no-install-recommends hello && hello";

async function buildOn(version: number): Promise<string> {
  const logs: string[] = [];
  await pool.buildLayer(
    { name: "hello", kind: "shell", main: Buffer.from(RECIPE), files: [], parents: [] },
    "deb",
    version,
    (p) => p.log && logs.push(p.log),
  );
  return logs.join("\n");
}

const archives = () => join(pool.mountpoint, "@cache/apt/archives");

describe("package cache", () => {
  it("keeps what a layer build fetched and a rebuild on the next base version fetches nothing", async () => {
    const first = await buildOn(1);
    expect(first).toMatch(/Hello, world!/);
    expect(first).not.toMatch(/Need to get 0 B\//); // the first build did download
    const debs = (await readdir(archives())).filter((f) => f.endsWith(".deb"));
    const hello = debs.find((f) => f.startsWith("hello_"));
    expect(hello).toBeDefined();
    const before = await stat(join(archives(), hello!));
    const stats = await pool.packageCache.stats();
    expect(stats.files).toBeGreaterThan(debs.length); // archives and lists
    expect(stats.bytes).toBeGreaterThan(before.size);

    // the layer's diff is the package, not apt's downloads or indexes
    const [build] = (await pool.listLayerBuilds()).filter((b) => b.base === "deb@1");
    const upper = join(pool.mountpoint, "@overlay/hello", `deb@1.${build!.digest.slice(0, 16)}`, "vol/upper");
    await stat(join(upper, "usr/bin/hello"));
    const inUpper = async (rel: string) => readdir(join(upper, rel)).catch(() => [] as string[]);
    expect((await inUpper("var/cache/apt/archives")).filter((f) => f.endsWith(".deb"))).toEqual([]);
    expect((await inUpper("var/lib/apt/lists")).filter((f) => f.includes("Packages"))).toEqual([]);

    // a new base version (a base update runs with the archives bound too), and the rebuild on it
    const v2 = await pool.updateBase("deb", ["/bin/sh", "-c", "echo v2 > /etc/protoctl-v2"], {
      network: false,
    });
    expect(v2.version).toBe(2);
    const second = await buildOn(2);
    expect(second).toMatch(/Hello, world!/);
    expect(second).toMatch(/Need to get 0 B\//);
    const after = await stat(join(archives(), hello!));
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.ino).toBe(before.ino);

    expect((await readdir(join(pool.mountpoint, "@cache"))).filter((e) => e.startsWith(".tmp-"))).toEqual([]);
  }, 600_000);
});
