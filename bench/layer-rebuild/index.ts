/**
 * layer-rebuild: what the node's package cache saves when a layer is rebuilt
 * on a new base version (issue 17 item 6). On one pool:
 *
 *  - a Debian bookworm base from debootstrap (minbase + python3; not timed);
 *  - an Ansible playbook layer installing nginx and postgresql, first build
 *    timed (packages from the Debian mirror, into the cache);
 *  - a new base version by a trivial `base update` (one file written);
 *  - the same layer rebuilt on it, timed: rebased onto deb@2 when the base
 *    change does not meet the layer (layers.ts), else from scratch with the
 *    packages from the cache; `rebuild_how` says which.
 * Reports both, their ratio, and the cache's size. Target: first ≥ 5 × rebuild.
 *
 * `--quick` (the smoke test's form): the cached debootstrap rootfs of the
 * tests (test/fixtures/debian-rootfs.ts) imported, and a playbook of `raw`
 * tasks installing `hello` (no python3 needed); it measures little.
 *
 * Usage: npm run bench -- layer-rebuild [--quick]
 * Root only (btrfs, loop devices, nspawn, the Debian mirror). Last stdout line is the JSON result.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPool } from "../../agent/host/pool/index.js";
import { silentLogger } from "../../common/logger.js";
import { cachedDebianRootfs } from "../../test/fixtures/debian-rootfs.js";

const TARGET_RATIO = 5;

const FULL_PLAYBOOK = `- hosts: all
  gather_facts: false
  tasks:
    - name: nginx and postgresql
      ansible.builtin.apt:
        name: [nginx, postgresql]
        update_cache: true
        install_recommends: false
`;

const QUICK_PLAYBOOK = `- hosts: all
  gather_facts: false
  tasks:
    - name: hello, without python3
      ansible.builtin.raw: apt-get update && apt-get install -y --no-install-recommends hello
`;

const round = (n: number) => Math.round(n * 100) / 100;
const seconds = (ms: number) => round(ms / 1000);

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-bench-layer-"));
  const sizeBytes = (quick ? 1536 : 3072) * 2 ** 20;
  const pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes }, silentLogger());
  const tail: string[] = [];
  const progress = (p: { log?: string }) => {
    if (!p.log) return;
    tail.push(p.log);
    if (tail.length > 40) tail.shift();
  };
  try {
    let t = performance.now();
    if (quick) await pool.importBase("deb", { dir: await cachedDebianRootfs() });
    else await pool.buildBase("deb", { debootstrap: { suite: "bookworm", packages: ["python3"] } }, progress);
    const baseMs = performance.now() - t;
    console.log(`base deb@1 ready in ${seconds(baseMs)} s (${quick ? "imported" : "debootstrap"})`);

    const spec = {
      name: "web",
      kind: "ansible" as const,
      main: Buffer.from(quick ? QUICK_PLAYBOOK : FULL_PLAYBOOK),
      files: [],
      parents: [],
    };
    t = performance.now();
    const first = await pool.buildLayer(spec, "deb", 1, progress);
    const firstMs = performance.now() - t;
    const cache = await pool.packageCache.stats();
    console.log(
      `first build on deb@1: ${seconds(firstMs)} s, layer ${(first.sizeBytes / 2 ** 20).toFixed(1)} MiB; ` +
        `cache ${(cache.bytes / 2 ** 20).toFixed(1)} MiB in ${cache.files} files`,
    );

    t = performance.now();
    const v2 = await pool.updateBase("deb", ["/bin/sh", "-c", "echo 2 > /etc/protoctl-bench-version"], {
      network: false,
    });
    const updateMs = performance.now() - t;
    console.log(`base update to deb@${v2.version}: ${seconds(updateMs)} s`);

    t = performance.now();
    const rebuilt = await pool.buildLayer(spec, "deb", v2.version, progress);
    const rebuildMs = performance.now() - t;
    const ratio = firstMs / rebuildMs;
    const ok = ratio >= TARGET_RATIO;
    console.log(
      `rebuild on deb@${v2.version}: ${seconds(rebuildMs)} s; first/rebuild ${ratio.toFixed(2)}× (${rebuilt.from})`,
    );
    console.log(
      JSON.stringify({
        bench: "layer-rebuild",
        quick,
        packages: quick ? ["hello"] : ["nginx", "postgresql"],
        first_s: seconds(firstMs),
        rebuild_s: seconds(rebuildMs),
        ratio: round(ratio),
        rebuild_how: rebuilt.from ?? "unknown",
        target: TARGET_RATIO,
        base_update_s: seconds(updateMs),
        cache_bytes: cache.bytes,
        cache_files: cache.files,
        method: "one pool, first build then base update then rebuild, sequential, no warm-up",
        ok,
      }),
    );
    process.exitCode = ok ? 0 : 1;
  } catch (err) {
    console.error(tail.join("\n"));
    throw err;
  } finally {
    await pool.destroy();
    await rm(stateDir, { recursive: true, force: true });
  }
}

await main();
