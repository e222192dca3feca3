/**
 * Propagation across real nodes: etcd + a controller (TLS) on h0, agents a1
 * (origin), a2, a3 and a4 (its state dir a 64 MiB tmpfs: no room) in network
 * namespaces, real NBD (nbdkit exports over TLS with the cluster CA,
 * nbdfuse through the nbdkit TLS proxy), real btrfs seeds and sprouts.
 * The origin's egress is rate-limited with tc where a test needs hydration
 * to take a while.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { output, run } from "../../common/exec.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase, NodeState, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { call, eventually, streamed, testEnvSpec } from "../../test/support/controller/cluster.js";
import {
  type PropagationCluster,
  startPropagationCluster,
  type TestAgent,
} from "../../test/support/controller/propagation-cluster.js";

const MiB = 1024 * 1024;
let cl: PropagationCluster;
let rootfs: string;
let dataSha: string;

const phase = (p: PushProgress) =>
  (AttachmentPhase[p.phase] ?? "").replace("ATTACHMENT_PHASE_", "").toLowerCase();

async function limitEgress(host: number, rate: string | undefined): Promise<void> {
  const h = cl.hosts.hosts[host]!;
  await cl.hosts.exec(h, "tc", ["qdisc", "del", "dev", h.ifname, "root"], { allowFailure: true });
  if (rate) {
    await cl.hosts.exec(h, "tc", [
      "qdisc",
      "add",
      "dev",
      h.ifname,
      "root",
      "tbf",
      "rate",
      rate,
      "burst",
      "256kb",
      "latency",
      "400ms",
    ]);
  }
}

/** Runs `fn` with the egress of `hosts` limited to `rate`, lifted again after it. */
async function withSlowEgress<T>(hosts: number[], rate: string, fn: () => Promise<T>): Promise<T> {
  for (const h of hosts) await limitEgress(h, rate);
  try {
    return await fn();
  } finally {
    for (const h of hosts) await limitEgress(h, undefined);
  }
}

/** SIGKILLs `agent`, starts it again, and runs `script` in `env` once the new process answers. */
async function restartThenExec(agent: TestAgent, env: string, script: string) {
  await cl.kill(agent.proc, "SIGKILL");
  cl.startAgent(agent);
  // the new process answers once it has adopted what the old one left
  return eventually(() => cl.exec(env, ["sh", "-c", script]), 60_000, 200);
}

async function version(n: number): Promise<void> {
  await writeFile(join(rootfs, "etc/motd"), `version ${n}\n`);
  await cl.importBase("a1", "demo", rootfs);
  await eventually(async () =>
    (await call(cl.c, "getBase", { name: "demo" })).versions.some(
      (x) => x.version === n && x.nodes.includes("a1"),
    ),
  );
}

async function attachmentOf(node: string, v: number) {
  return (await cl.etcd("attachments/")).find((a) => a.node === node && a.version === v);
}

beforeAll(async () => {
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-prop-rootfs-"));
  await makeBusyboxRootfs(rootfs);
  await mkdir(join(rootfs, "data"));
  const data = randomBytes(40 * MiB);
  dataSha = createHash("sha256").update(data).digest("hex");
  await writeFile(join(rootfs, "data/big"), data);
  cl = await startPropagationCluster({
    agents: 5,
    smallStateDir: { a4: 64 },
    schedulerPropagation: true,
    labels: { a5: "tier=edge" },
  });
}, 180_000);

afterAll(async () => {
  for (const e of [
    "lazy",
    "after-switch",
    "hooked",
    "delta5",
    "on-seed",
    "after-restart",
    "resumed",
    "layered",
    "delta7",
  ]) {
    await call(cl.c, "deleteEnv", { name: e, wait: true }, 60_000).catch(() => undefined);
  }
  await cl?.cleanup();
  await rm(rootfs, { recursive: true, force: true });
}, 120_000);

it("pushes to all nodes: usable at once, an env execs before hydration ends, then local with the NBD server gone", async () => {
  await version(1);
  await limitEgress(1, "150mbit");
  const t: Record<string, number> = {};
  const evs = await cl.push(
    { ref: { name: "demo", version: 1 }, nodes: ["a2", "a3"], fanout: 2 },
    (p, ms) => {
      if (p.node && !t[`${p.node}:${phase(p)}`]) t[`${p.node}:${phase(p)}`] = ms;
    },
  );
  expect(evs.at(-1)?.done).toBe(true);
  console.log("push usable", t);
  expect(t["a2:attached"]).toBeDefined();
  expect(t["a3:attached"]).toBeDefined();

  await cl.createEnv("lazy", "demo", 1, "a2");
  // made on the lazy version: still reading over NBD (the origin is throttled: the copy of
  // 40 MiB at 150 Mbit/s takes over 2 s, and starts only once both targets are attached)
  expect((await attachmentOf("a2", 1))?.phase).toBe("ATTACHMENT_PHASE_ATTACHED");
  const r = await cl.exec("lazy", ["sha256sum", "/data/big"]);
  expect(r.stdout.split(" ")[0]).toBe(dataSha);

  await limitEgress(1, undefined);
  const local = await cl.push({ ref: { name: "demo", version: 1 }, nodes: ["a2", "a3"], waitLocal: true });
  expect(
    local
      .filter((p) => phase(p) === "local")
      .map((p) => p.node)
      .sort(),
  ).toEqual(["a2", "a3"]);
  // nothing reads over NBD any more: the exports stop (the seed image stays while a4 lacks @1)
  await eventually(async () => (await cl.etcd("exports/")).length === 0);

  const qemu = await output("ps", ["-eo", "args"]);
  expect(qemu.split("\n").filter((l) => l.startsWith("qemu-nbd") && l.includes(cl.dir))).toEqual([]);
  await run("sh", ["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]);
  const again = await cl.exec("lazy", ["sh", "-c", "sha256sum /data/big; cat /etc/motd"]);
  expect(again.stdout).toBe(`${dataSha}  /data/big\nversion 1\n`);
  const node = await call(cl.c, "getBase", { name: "demo" });
  expect(node.versions.find((v) => v.version === 1)?.nodes.sort()).toEqual(["a1", "a2", "a3"]);
}, 120_000);

it("pushes by label selector to the matching nodes only", async () => {
  const evs = await cl.push({
    ref: { name: "demo", version: 1 },
    selector: { tier: "edge" },
    waitLocal: true,
  });
  expect([...new Set(evs.filter((p) => p.node).map((p) => p.node))]).toEqual(["a5"]);
  expect(evs.filter((p) => p.node === "a5" && phase(p) === "local")).toHaveLength(1);
  await eventually(async () => (await call(cl.c, "getNode", { name: "a5" })).baseVersions.includes("demo@1"));
  const node = await call(cl.c, "getBase", { name: "demo" });
  expect(node.versions.find((v) => v.version === 1)?.nodes.sort()).toEqual(["a1", "a2", "a3", "a5"]);
  // nothing matches: a clear error, nothing pushed
  const none = await cl
    .push({ ref: { name: "demo", version: 1 }, selector: { tier: "nowhere" } })
    .catch((e) => e);
  expect(none).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "NO_TARGETS" });
  expect(none.message).toMatch(/no ready node matches tier=nowhere/);
}, 60_000);

it("rejects a corrupted image by checksum and fails the node clearly", async () => {
  await version(2);
  await limitEgress(1, "100mbit");
  let corrupted = false;
  const err = await cl
    .push({ ref: { name: "demo", version: 2 }, nodes: ["a2"], waitLocal: true }, (p) => {
      if (p.node === "a2" && phase(p) === "attached" && !corrupted) {
        corrupted = true;
        void corrupt(join(cl.agents[0]!.stateDir, "propagation/seeds/demo@2.img"));
      }
    })
    .catch((e) => e);
  await limitEgress(1, undefined);
  expect(corrupted).toBe(true);
  expect(err.code).toBe(Code.DATA_LOSS);
  expect(err.message).toMatch(/does not match its checksum/);
  const failed = (err.progress as PushProgress[]).find((p) => phase(p) === "failed");
  expect(failed?.node).toBe("a2");
  // the version is deleted cluster-wide: the attachment is detached and the seed collected
  await call(cl.c, "deleteBase", { ref: { name: "demo", version: 2 } });
  expect((await cl.etcd("seeds/")).filter((x) => x.version === 2)).toEqual([]);
  // @1 is superseded: its image is collected (the record stays, naming what hydrated nodes hold)
  expect((await cl.etcd("seeds/")).find((x) => x.version === 1)?.node).toBeUndefined();
}, 120_000);

async function corrupt(image: string): Promise<void> {
  const fh = await open(image, "r+");
  try {
    const size = (await fh.stat()).size;
    // flip bytes every 4 MiB over the second half: some are surely not copied yet
    for (let off = Math.floor(size / 2); off < size; off += 4 * MiB) {
      await fh.write(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, off);
    }
  } finally {
    await fh.close();
  }
}

it("reports a full target as RESOURCE_EXHAUSTED with nothing half-attached", async () => {
  await version(3);
  const err = await cl.push({ ref: { name: "demo", version: 3 }, nodes: ["a4"] }).catch((e) => e);
  expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
  expect(err.message).toMatch(/no room/);
  const a4 = cl.agents.find((a) => a.name === "a4")!;
  const loops = await output("losetup", ["-l", "-n", "-O", "BACK-FILE"]);
  expect(loops.split("\n").filter((l) => l.includes(`${a4.stateDir}/propagation`))).toEqual([]);
  // the sprouts' tmpfs (mounted at the first attach) stays, with no sprout in it
  const mounts = await output("findmnt", ["-rn", "-o", "TARGET"]);
  expect(mounts.split("\n").filter((l) => l.startsWith(`${a4.stateDir}/propagation`))).toEqual([
    `${a4.stateDir}/propagation/sprouts`,
  ]);
  expect(await readdir(`${a4.stateDir}/propagation/sprouts`)).toEqual([]);
  const node = await call(cl.c, "getNode", { name: "a4" });
  expect(node.baseVersions).toEqual([]);
}, 60_000);

it("re-attaches a node to another source when its source dies mid-hydration", async () => {
  await cl.push({ ref: { name: "demo", version: 3 }, nodes: ["a2"], waitLocal: true });
  await limitEgress(1, "100mbit");
  let killed: Promise<void> | undefined;
  const evs = await cl.push(
    { ref: { name: "demo", version: 3 }, nodes: ["a3"], waitLocal: true, fanout: 1 },
    (p) => {
      if (p.node === "a3" && phase(p) === "attached" && !killed) {
        expect(p.sourceNode).toBe("a1");
        killed = cl.kill(cl.agents[0]!.proc, "SIGKILL");
      }
    },
  );
  await killed;
  const last = evs.filter((p) => p.node === "a3").at(-1)!;
  expect(phase(last)).toBe("local");
  expect(last.sourceNode).toBe("a2");
  expect(evs.some((p) => /re-attaching/.test(p.message))).toBe(true);
  await cl.createEnv("after-switch", "demo", 3, "a3");
  const r = await cl.exec("after-switch", ["sh", "-c", "sha256sum /data/big; cat /etc/motd"]);
  expect(r.stdout).toBe(`${dataSha}  /data/big\nversion 3\n`);
}, 120_000);

it("places an env on a node lacking its version: the scheduler has it attached there first", async () => {
  // a5 has never held demo@3 (a1, its origin, is dead by now: a2 and a3 hold it)
  expect((await call(cl.c, "getNode", { name: "a5" })).baseVersions).not.toContain("demo@3");
  await cl.createEnv("hooked", "demo", 3, "a5");
  const r = await cl.exec("hooked", ["sh", "-c", "sha256sum /data/big; cat /etc/motd"]);
  expect(r.stdout).toBe(`${dataSha}  /data/big\nversion 3\n`);
  const att = await attachmentOf("a5", 3);
  expect(["a2", "a3"]).toContain(att?.sourceNode);
  await eventually(async () => (await call(cl.c, "getNode", { name: "a5" })).baseVersions.includes("demo@3"));
}, 120_000);

it("carries a push to the end after its controller dies mid-hydration", async () => {
  // a2 makes demo@4 (a1, the first origin, is dead by now); a3 gets it over a slow link
  await cl.importBase("a2", "demo", rootfs);
  await eventually(async () =>
    (await call(cl.c, "getBase", { name: "demo" })).versions.some(
      (x) => x.version === 4 && x.nodes.includes("a2"),
    ),
  );
  await limitEgress(2, "100mbit");
  try {
    let killed: Promise<void> | undefined;
    await cl
      .push({ ref: { name: "demo", version: 4 }, nodes: ["a3"], waitLocal: true }, (p) => {
        if (p.node === "a3" && phase(p) === "hydrating" && !killed) killed = cl.restartController();
      })
      .catch(() => undefined);
    expect(killed).toBeDefined();
    await killed;
    // The old controller died before the copy could end: only the new leader, finding the push
    // short of LOCAL in etcd, can record LOCAL.
    await eventually(
      async () => (await attachmentOf("a3", 4))?.phase === "ATTACHMENT_PHASE_LOCAL",
      90_000,
      250,
    );
    await eventually(async () =>
      (await call(cl.c, "getNode", { name: "a3" })).baseVersions.includes("demo@4"),
    );
  } finally {
    await limitEgress(2, undefined);
  }
}, 180_000);

/** `base update` on a2: demo@N from its latest version, with motd "delta N". */
async function update(n: number): Promise<void> {
  await streamed(
    cl.c.updateBase({
      name: "demo",
      command: ["sh", "-c", `echo delta ${n} > /etc/motd`],
      script: Buffer.alloc(0),
      node: "a2",
      network: false,
    }),
  );
  await eventually(async () =>
    (await call(cl.c, "getBase", { name: "demo" })).versions.some(
      (x) => x.version === n && x.nodes.includes("a2"),
    ),
  );
}

it("sends a delta into a node holding the parent as a hydrated seed, then deltas from its pool; env roll moves a layered env onto it", async () => {
  // a3 holds demo@4 as a hydrated seed (the test above); a2 made @4 in its pool and updates it
  await update(5);
  const evs = await cl.push({
    ref: { name: "demo", version: 5 },
    nodes: ["a3"],
    transport: "delta",
    waitLocal: true,
  });
  const mine = evs.filter((p) => p.node === "a3");
  expect(mine.some((p) => p.message === "btrfs send -p @4")).toBe(true);
  expect(phase(mine.at(-1)!)).toBe("local");
  expect(mine.at(-1)!.message).toBe("delta");
  // no seed image was made for @5: the delta carried it
  expect((await cl.etcd("seeds/")).filter((x) => x.version === 5)).toEqual([]);
  await cl.createEnv("delta5", "demo", 5, "a3");
  const r = await cl.exec("delta5", ["sh", "-c", "sha256sum /data/big; cat /etc/motd"]);
  expect(r.stdout).toBe(`${dataSha}  /data/big\ndelta 5\n`);
  // a3 now holds @5 in its pool: the next version goes as a delta without being asked
  await update(6);
  const next = await cl.push({ ref: { name: "demo", version: 6 }, nodes: ["a3"], waitLocal: true });
  expect(next.filter((p) => p.node === "a3").map((p) => p.message)).toContain("btrfs send -p @5");
  await eventually(async () => (await call(cl.c, "getNode", { name: "a3" })).baseVersions.includes("demo@6"));
  // the partial upgrade's last steps: an env with a layer, rolled to the latest version, is
  // recreated there (not upgraded in place) on its layer rebuilt for that version
  await streamed(
    cl.c.addLayer({
      layer: {
        name: "stamp",
        recipe: {
          kind: RecipeKind.RECIPE_KIND_SHELL,
          main: Buffer.from("cat /etc/motd > /etc/stamp\n"),
          files: [],
        },
        parents: [],
      },
      buildOn: [],
    }),
  );
  await call(
    cl.c,
    "createEnv",
    {
      spec: testEnvSpec("layered", { base: { name: "demo", version: 5 }, node: "a3", layers: ["stamp"] }),
      wait: true,
    },
    120_000,
  );
  await cl.exec("layered", ["sh", "-c", "echo old > /root/mark"]);
  expect((await cl.exec("layered", ["cat", "/etc/stamp"])).stdout).toBe("delta 5\n");
  const rolled = await call(cl.c, "rollEnv", { name: "layered", version: 0, wait: true }, 120_000);
  expect(rolled.status?.baseVersion).toBe(6);
  expect(rolled.status?.node).toBe("a3");
  const after = await cl.exec("layered", ["sh", "-c", "cat /etc/stamp; cat /root/mark || echo recreated"]);
  expect(after.stdout).toBe("delta 6\nrecreated\n");
}, 120_000);

it("keeps sprouts on the agent's tmpfs, and an agent restart adopts its attachments with their envs", async () => {
  // a3 holds demo@4 as a hydrated seed; an env on it writes into the sprout
  const a3 = cl.agents.find((a) => a.name === "a3")!;
  const sprouts = join(a3.stateDir, "propagation/sprouts");
  expect((await output("findmnt", ["-n", "-o", "FSTYPE", sprouts])).trim()).toBe("tmpfs");
  expect(await readdir(sprouts)).toContain("demo@4.sprout.img");
  await cl.createEnv("on-seed", "demo", 4, "a3");
  await cl.exec("on-seed", ["sh", "-c", "echo kept > /root/note"]);

  const r = await restartThenExec(a3, "on-seed", "cat /root/note; sha256sum /data/big");
  expect(r!.stdout).toBe(`kept\n${dataSha}  /data/big\n`);
  expect((await call(cl.c, "getNode", { name: "a3" })).state).toBe(NodeState.NODE_STATE_READY);
  await eventually(async () => (await call(cl.c, "getNode", { name: "a3" })).baseVersions.includes("demo@4"));
  // a new env on the adopted version: the version's files, not the other env's writes
  await cl.createEnv("after-restart", "demo", 4, "a3");
  const fresh = await cl.exec("after-restart", [
    "sh",
    "-c",
    "sha256sum /data/big; cat /root/note || echo fresh",
  ]);
  expect(fresh.stdout).toBe(`${dataSha}  /data/big\nfresh\n`);
}, 120_000);

it("an agent killed while its attachment hydrates takes it up again after a restart and finishes it", async () => {
  // demo@5 is in a2's and a3's pools; a5 gets it over slow links
  const a5 = cl.agents.find((a) => a.name === "a5")!;
  await withSlowEgress([2, 3], "60mbit", async () => {
    await cl.push({ ref: { name: "demo", version: 5 }, nodes: ["a5"] });
    await cl.createEnv("resumed", "demo", 5, "a5");
    expect((await cl.exec("resumed", ["cat", "/etc/motd"])).stdout).toBe("delta 5\n");
    expect((await attachmentOf("a5", 5))?.phase).not.toBe("ATTACHMENT_PHASE_LOCAL");
    // the NBD client outlived the agent: the first exec the new process answers reads all of it
    // (an EIO would fail it), while that process switches the seed to a client of its own
    const r = await restartThenExec(a5, "resumed", "sha256sum /data/big 2>&1");
    expect(r.stdout).toBe(`${dataSha}  /data/big\n`);
    expect(r.exit).toBe(0);
  });
  // and hydrates it: the seed loop device ends up reading the local copy; the dead process's
  // half-made copy is gone
  const image = join(a5.stateDir, "propagation/attachments/demo@5/seed.img");
  await eventually(
    async () =>
      (await output("losetup", ["-n", "-O", "BACK-FILE", "-l"])).split("\n").some((l) => l.trim() === image),
    60_000,
    250,
  );
  expect((await cl.exec("resumed", ["cat", "/etc/motd"])).stdout).toBe("delta 5\n");
  expect(
    (await readdir(join(a5.stateDir, "propagation/attachments/demo@5"))).filter((n) => n.endsWith(".part")),
  ).toEqual([]);
}, 150_000);

it("a delta asked for onto a parent the node holds only attached waits for that hydration, then sends -p", async () => {
  // a2 and a3 hold demo@6 in their pools; a2 makes @7 from it. a5 gets @6 over slow links and is
  // only attached to it when the delta of @7 is asked for.
  await update(7);
  const evs = await withSlowEgress([2, 3], "60mbit", async () => {
    await cl.push({ ref: { name: "demo", version: 6 }, nodes: ["a5"] });
    expect((await attachmentOf("a5", 6))?.phase).not.toBe("ATTACHMENT_PHASE_LOCAL");
    return cl.push({ ref: { name: "demo", version: 7 }, nodes: ["a5"], transport: "delta", waitLocal: true });
  });
  const messages = evs.filter((p) => p.node === "a5").map((p) => p.message);
  const waited = messages.indexOf("waiting for @6 to hydrate (the delta's parent)");
  expect(waited).toBeGreaterThanOrEqual(0);
  expect(messages.indexOf("btrfs send -p @6")).toBeGreaterThan(waited);
  expect(messages.at(-1)).toBe("delta");
  expect((await attachmentOf("a5", 6))?.phase).toBe("ATTACHMENT_PHASE_LOCAL");
  expect((await cl.etcd("seeds/")).filter((x) => x.version === 7)).toEqual([]);
  await cl.createEnv("delta7", "demo", 7, "a5");
  const r = await cl.exec("delta7", ["sh", "-c", "sha256sum /data/big; cat /etc/motd"]);
  expect(r.stdout).toBe(`${dataSha}  /data/big\ndelta 7\n`);
}, 150_000);
