/**
 * Fleet propagation through the controller (issues 6, 20 item 5), on
 * network-namespace nodes: etcd + controller on h0, an origin agent and
 * --nodes target agents (test/support/controller/propagation-cluster.ts),
 * all freshly started.
 *
 *  - time-to-usable: `PushBase` issued right after the import that made the
 *    version returns → an env on the new version has exec'd on every target
 *    (each env is created as soon as its node reports ATTACHED), for a small
 *    base (the first push these agents ever run) and then a large one; target
 *    ≤ 1.5 s each and large/small ≤ 1.2. No warm-up and no excluded round:
 *    the origin publishes the seed image at seal, in the background, and the
 *    push waits for whatever is left of it; how long is taken from the push's
 *    record (`seed_wait_ms`, `seed_how`).
 *  - fleet hydration: first ATTACHED → every target LOCAL, for k=2, for one
 *    node, and for the star (k=100), small base, seed published at seal.
 *
 * `--warm-node` times the push as the bench did before issue 20 item 5 (at
 * 5895d11), to compare builds across that change: one more agent, a2, takes
 * an untimed push of each version first (waitLocal: it waits for the seed),
 * then `sync`, then the timed push to a3..; and a `first_push` round (small
 * base) runs before the small and large rounds, outside the target. Same
 * target and ok rule.
 *
 * Run (root): npm run bench -- propagate-fleet [--nodes 6] [--small 256] [--large 2048] [--no-fanout] [--warm-node]
 * (bench/propagate-fleet/index.mjs starts this file with the TypeScript hooks).
 * Last stdout line: {"bench":"propagate-fleet", ...}
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../common/exec.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { call } from "../../test/support/controller/cluster.js";
import {
  type PropagationCluster,
  startPropagationCluster,
} from "../../test/support/controller/propagation-cluster.js";

const MiB = 1024 * 1024;
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const r1 = (n: number) => Math.round(n * 10) / 10;
const phase = (p: PushProgress) =>
  (AttachmentPhase[p.phase] ?? "").replace("ATTACHMENT_PHASE_", "").toLowerCase();

async function writeRandom(path: string, mib: number): Promise<void> {
  const ws = createWriteStream(path);
  for (let i = 0; i < mib; i++) {
    if (!ws.write(randomBytes(MiB))) await new Promise<void>((r) => ws.once("drain", () => r()));
  }
  await new Promise<void>((res, rej) => ws.end((e?: Error | null) => (e ? rej(e) : res())));
}

let seq = 0;
async function newVersion(cl: PropagationCluster, rootfs: string, dataMiB: number): Promise<number> {
  await rm(join(rootfs, "data"), { recursive: true, force: true });
  await mkdir(join(rootfs, "data"));
  await writeRandom(join(rootfs, "data/big"), dataMiB);
  await writeFile(
    join(rootfs, "etc/motd"),
    `bench ${++seq} ${createHash("sha1").update(String(Date.now())).digest("hex")}\n`,
  );
  await cl.importBase("a1", "bench", rootfs);
  for (;;) {
    const b = await call(cl.c, "getBase", { name: "bench" });
    const v = b.versions.find((x) => x.nodes.includes("a1") && x.version === b.latest);
    if (v) return v.version;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function timeToUsable(cl: PropagationCluster, version: number, targets: string[], fanout: number) {
  const done: Record<string, number> = {};
  const steps: Record<string, { attached: number; created: number; exec: number }> = {};
  const pending: Array<Promise<void>> = [];
  const t0 = performance.now();
  let firstAttached = 0;
  let lastLocal = 0;
  const started = new Set<string>();
  await cl.push({ ref: { name: "bench", version }, nodes: targets, fanout, waitLocal: true }, (p, ms) => {
    if (!p.node) return;
    if (phase(p) === "attached" && !started.has(p.node)) {
      started.add(p.node);
      firstAttached ||= ms;
      const node = p.node;
      const env = `u${version}-${node}`;
      pending.push(
        (async () => {
          const a = performance.now();
          await cl.createEnv(env, "bench", version, node);
          const c = performance.now();
          const r = await cl.exec(env, ["cat", "/etc/motd"]);
          if (r.exit !== 0) throw new Error(`exec on ${node} exited ${r.exit}`);
          done[node] = performance.now() - t0;
          steps[node] = { attached: r1(a - t0), created: r1(c - a), exec: r1(performance.now() - c) };
        })(),
      );
    }
    if (phase(p) === "local") lastLocal = Math.max(lastLocal, ms);
  });
  await Promise.all(pending);
  const usable = Math.max(...Object.values(done));
  for (const n of targets) {
    await call(cl.c, "deleteEnv", { name: `u${version}-${n}`, wait: true }, 60_000).catch(() => undefined);
  }
  return {
    usable_ms: r1(usable),
    per_node_ms: Object.fromEntries(Object.entries(done).map(([k, v]) => [k, r1(v)])),
    // when the node was reported attached, then how long the env create and the exec took
    steps_ms: steps,
    first_attached_ms: r1(firstAttached),
    hydrated_all_ms: r1(lastLocal),
  };
}

async function fleetHydration(cl: PropagationCluster, version: number, targets: string[], fanout: number) {
  let first = 0;
  let last = 0;
  const t0 = performance.now();
  await cl.push({ ref: { name: "bench", version }, nodes: targets, fanout, waitLocal: true }, (p, ms) => {
    if (phase(p) === "attached") first ||= ms;
    if (phase(p) === "local") last = Math.max(last, ms);
  });
  return {
    first_attached_ms: r1(first),
    all_local_ms: r1(last),
    hydrate_span_ms: r1(last - first),
    total_ms: r1(performance.now() - t0),
  };
}

/** How the push of bench@N to `targets` got its seed, from its record (controller/operations/record.ts). */
async function seedWait(cl: PropagationCluster, version: number, targets: string[]) {
  const recs = (await cl.etcd("operations/")) as Array<{
    spec: { kind: string; push?: { base: string; version: number; targets: string[] } };
    status: { seed?: { how: string; waitMs: number } };
  }>;
  const want = [...targets].sort().join(",");
  const r = recs.find(
    (x) =>
      x.spec.kind === "push" &&
      x.spec.push?.base === "bench" &&
      x.spec.push.version === version &&
      [...x.spec.push.targets].sort().join(",") === want,
  );
  return { seed_how: r?.status.seed?.how ?? "", seed_wait_ms: r?.status.seed?.waitMs ?? -1 };
}

async function main() {
  const nodes = arg("nodes", 6);
  const small = arg("small", 256);
  const large = arg("large", 2048);
  const warmNode = process.argv.includes("--warm-node");
  const rootfs = await mkdtemp(join(tmpdir(), "protoctl-bench-fleet-"));
  await makeBusyboxRootfs(rootfs);
  // a1 origin, (--warm-node: a2 warm-up,) then the targets; a cluster that fails to start must
  // not leave the rootfs behind
  const first = warmNode ? 3 : 2;
  const cl = await startPropagationCluster({
    agents: nodes + first - 1,
    poolSize: `${Math.ceil((large * 1.6) / 1024) + 1}G`,
  }).catch(async (err) => {
    await rm(rootfs, { recursive: true, force: true });
    throw err;
  });
  const targets = Array.from({ length: nodes }, (_, i) => `a${i + first}`);
  const out: Record<string, unknown> = {
    bench: "propagate-fleet",
    nodes,
    ...(warmNode
      ? {
          method:
            "warm-node (the bench at 5895d11): per version an untimed push to warm-up node a2 (waits for the seed), sync, then the timed push to the targets",
          warmup: "a2's push and a sync before each timed push",
          excluded: "first_push (small base, the first push on fresh agents)",
        }
      : {
          method: "push issued as the import returns; first push on fresh agents counted",
          warmup: "none",
          excluded: "none",
        }),
  };
  const rounds = [
    ...(warmNode ? [["first_push", small] as const] : []),
    ["small", small] as const,
    ["large", large] as const,
  ];
  try {
    for (const [label, mib] of rounds) {
      const t = performance.now();
      const v = await newVersion(cl, rootfs, mib);
      const importMs = performance.now() - t;
      let warm = {};
      if (warmNode) {
        const w = performance.now();
        await cl.push({ ref: { name: "bench", version: v }, nodes: ["a2"], waitLocal: true });
        const ms = performance.now() - w;
        const seed = await seedWait(cl, v, ["a2"]);
        warm = {
          publish_and_first_hydration_ms: r1(ms),
          warm_seed_how: seed.seed_how,
          warm_seed_wait_ms: seed.seed_wait_ms,
        };
        // as at 5895d11: the warm-up's dirty pages are written back before the timed push
        await run("sync", []);
      }
      const ttu = await timeToUsable(cl, v, targets, 2);
      out[label] = {
        base_mib: mib,
        import_ms: r1(importMs),
        ...warm,
        ...ttu,
        ...(await seedWait(cl, v, targets)),
      };
      console.log(JSON.stringify({ size: label, ...(out[label] as object) }));
    }
    const s = out.small as { usable_ms: number };
    const l = out.large as { usable_ms: number };
    out.usable_ratio = Math.round((100 * l.usable_ms) / s.usable_ms) / 100;
    // fan-out, small base, seed published at seal (spans measured from the first attach)
    const fan: Record<string, unknown> = {};
    const skip = process.argv.includes("--no-fanout");
    for (const [label, tg, k] of [
      ["one_node", targets.slice(0, 1), 2],
      ["k2", targets, 2],
      ["star", targets, 100],
    ] as const) {
      if (skip) break;
      const v = await newVersion(cl, rootfs, small);
      fan[label] = { ...(await fleetHydration(cl, v, [...tg], k)), ...(await seedWait(cl, v, [...tg])) };
      console.log(JSON.stringify({ fanout: label, ...(fan[label] as object) }));
    }
    out.fanout = fan;
    out.target_usable_ms = 1500;
    out.target_ratio = 1.2;
    out.ok = s.usable_ms <= 1500 && l.usable_ms <= 1500 && (out.usable_ratio as number) <= 1.2;
  } finally {
    await cl.cleanup();
    await rm(rootfs, { recursive: true, force: true });
  }
  console.log(JSON.stringify(out));
  if (!out.ok) process.exitCode = 1;
}

await main();
