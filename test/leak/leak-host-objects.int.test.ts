/**
 * The leak check names the host objects an env or a push leaves when a test
 * forgets them, each made by the project's own code the way the agent makes
 * it: an env cgroup deep below an agent's cgroup, an env's `vp*` veth, and an
 * NBD attachment (nbdkit export, nbdfuse client with its FUSE mount, the
 * read-only loop device on it). Each is found by the snapshot/diff the
 * integration run's globalSetup uses, by name, and nothing is left once it
 * is undone. (leak-daemons.int.test.ts proves the same through a nested
 * `vitest run` on a whole `up` cluster.)
 *
 * Only cgroups this test made are touched: a subtree of its own in the pids
 * hierarchy, named so that the walk reaches the env's dirs only through the
 * agent-made `protoctl` dir, as for a real agent.
 */
import { mkdir, mkdtemp, open, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { attachLoop, detachLoop } from "../../agent/host/attachments/loop.js";
import { connectNbd } from "../../agent/host/attachments/nbd-transport.js";
import { serveImage } from "../../agent/host/exports/nbd-server.js";
import { createCgroups, envCgroupSet, removeCgroups } from "../../agent/host/machines/cgroups.js";
import { vethHostName } from "../../agent/host/machines/naming.js";
import { run } from "../../common/exec.js";
import { takeSnapshot } from "./collect.js";
import { diffSnapshots, type Leak, RUN_MARKER_ENV } from "./snapshot.js";

const undo: Array<() => Promise<unknown>> = [];
const runId = () => process.env[RUN_MARKER_ENV] ?? "test";
const lines = (leaks: Leak[]) => leaks.map((l) => `${l.kind} ${l.what}`);
/**
 * What is still reported that mentions one of `names` once the test undid its objects. Only
 * these: other engineers' runs on this machine add mounts, links and cgroups of their own.
 */
async function leftOf(before: Awaited<ReturnType<typeof takeSnapshot>>, names: string[]): Promise<string[]> {
  return lines(diffSnapshots(before, await takeSnapshot(), runId())).filter((l) =>
    names.some((n) => l.includes(n)),
  );
}

afterEach(async () => {
  for (const u of undo.splice(0).reverse()) await u().catch(() => undefined);
});

describe("the leak check names what an env or a push leaves on the host", () => {
  it("an env cgroup several levels below the agent's own cgroup", async () => {
    const node = `lk${process.pid % 100000}`;
    // The agent's own cgroup, as a service manager nests it (not named protoctl*).
    const top = `/sys/fs/cgroup/pids/ptleak-${process.pid}`;
    const agentCg = join(top, "system.slice", "agent.service");
    await mkdir(agentCg, { recursive: true });
    undo.push(async () => {
      await rmdir(agentCg).catch(() => undefined);
      await rmdir(join(top, "system.slice")).catch(() => undefined);
      await rmdir(top);
    });
    const before = await takeSnapshot();

    const set = envCgroupSet({ pids: agentCg }, node, "web1");
    createCgroups(set, { pids: 64 });
    // nspawn's own children below the env's dir
    await mkdir(join(set.dirs.pids!, "payload"));
    undo.push(async () => removeCgroups(set));

    const found = lines(diffSnapshots(before, await takeSnapshot(), runId()));
    const envDir = join(agentCg, "protoctl", node, "web1");
    expect(found).toContain(`cgroup ${envDir}`);
    expect(found).toContain(`cgroup ${join(envDir, "payload")}`);
    expect(found).toContain(`cgroup ${join(agentCg, "protoctl")}`);

    expect(removeCgroups(set)).toEqual([]);
    expect(await leftOf(before, [top])).toEqual([]);
  });

  it("an env's veth (host side vp…, the env side in the env's namespace)", async () => {
    const node = `lk${process.pid % 100000}`;
    const veth = vethHostName(node, "web1");
    expect(veth).toMatch(/^vp[0-9a-f]{12}$/);
    const ns = `ptleak-${process.pid % 100000}`;
    const before = await takeSnapshot();

    await run("ip", ["netns", "add", ns]);
    undo.push(() => run("ip", ["netns", "del", ns]));
    await run("ip", ["link", "add", veth, "type", "veth", "peer", "name", "host0", "netns", ns]);
    undo.push(() => run("ip", ["link", "del", veth], { allowFailure: true }));
    await run("ip", ["link", "set", veth, "up"]);

    const found = lines(diffSnapshots(before, await takeSnapshot(), runId()));
    expect(found).toContain(`link ${veth}`);
    expect(found).toContain(`netns ${ns}`);
    // the env side is in the env's namespace: not one of the root namespace's links
    expect(found).not.toContain("link host0");

    await run("ip", ["link", "del", veth]);
    await run("ip", ["netns", "del", ns]);
    undo.splice(0);
    expect(await leftOf(before, [veth, ns])).toEqual([]);
  });

  it("an NBD attachment: the export's nbdkit, the nbdfuse client and its mount, the loop device", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-leaknbd-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const image = join(dir, "seed.img");
    const fh = await open(image, "w");
    await fh.truncate(8 * 1024 * 1024);
    await fh.close();
    const before = await takeSnapshot();

    const exp = await serveImage({
      image,
      exportName: "leak@1",
      bindAddress: "127.0.0.1",
      stateDir: join(dir, "exports"),
    });
    undo.push(() => exp.stop());
    const nbd = await connectNbd({
      uri: exp.uri,
      dir: join(dir, "nbd-0"),
      connections: 1,
      sizeBytes: 8 * 1024 * 1024,
      kind: "nbdfuse",
    });
    undo.push(() => nbd.close());
    const loop = await attachLoop(nbd.path, { readOnly: true });
    undo.push(() => detachLoop(loop));

    const leaks = diffSnapshots(before, await takeSnapshot(), runId());
    const found = lines(leaks);
    expect(found).toContain(`loop ${loop} ${nbd.path}`);
    expect(found.some((l) => l.startsWith(`mount ${join(dir, "nbd-0")} fuse`))).toBe(true);
    const procs = leaks.filter((l) => l.kind === "process").map((l) => l.what);
    expect(procs.some((p) => /^pid \d+ \(nbdfuse\): nbdfuse /.test(p))).toBe(true);
    expect(procs.some((p) => /^pid \d+ \(nbdkit\): /.test(p) && p.includes("leak@1"))).toBe(true);

    await detachLoop(loop);
    await nbd.close();
    await exp.stop();
    undo.splice(1);
    await rm(dir, { recursive: true, force: true });
    undo.splice(0);
    // nbdkit and nbdfuse exit a moment after they are told to
    const mine = [dir, `${loop} `, "leak@1"];
    let left = await leftOf(before, mine);
    for (let i = 0; i < 40 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = await leftOf(before, mine);
    }
    expect(left).toEqual([]);
  });
});
