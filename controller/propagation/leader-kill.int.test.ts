/**
 * Issue 18's done-when: the leader controller is SIGKILLed at several points
 * of a 6-node push and of a `lab up`, and each ends complete. Two
 * controller replicas (TLS) and etcd on h0, six real agents on h1..h6; the
 * test asks a replica that is not the leader, so its stream outlives the
 * kill, and the push or lab is finished by whichever replica leads next,
 * through the same operation record and the same reconcile pass as any
 * other (the record shows the passes and who ran the last one).
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ControlServiceClient, LabProgress, PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase, EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import {
  call,
  eventually,
  execIn,
  importBaseFromDir,
  streamed,
} from "../../test/support/controller/cluster.js";
import {
  type PropagationCluster,
  startPropagationCluster,
} from "../../test/support/controller/propagation-cluster.js";

const MiB = 1024 * 1024;
const NODES = ["a1", "a2", "a3", "a4", "a5", "a6"];
let cl: PropagationCluster;
let rootfs: string;

beforeAll(async () => {
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-lk-rootfs-"));
  await makeBusyboxRootfs(rootfs);
  await mkdir(join(rootfs, "data"));
  await writeFile(join(rootfs, "data/big"), randomBytes(24 * MiB));
  cl = await startPropagationCluster({ agents: 6, controllers: 2, readyTimeoutMs: 240_000 });
}, 330_000);

afterAll(async () => {
  if (cl) {
    const c = await live().catch(() => undefined);
    if (c) {
      await call(c, "deleteLab", { name: "kl", wait: true }, 90_000).catch(() => undefined);
      await eventually(
        async () => (await call(c, "listEnvs", { node: "", group: "" })).envs.length === 0,
        90_000,
        500,
      ).catch(() => undefined);
    }
    await cl.cleanup();
  }
  await rm(rootfs, { recursive: true, force: true });
}, 180_000);

/** A client of a replica that answers. */
async function live(): Promise<ControlServiceClient> {
  return eventually(async () => {
    for (const r of cl.controllers) {
      const ok = await call(r.c, "getVersion", {}, 1000).then(
        () => true,
        () => false,
      );
      if (ok) return r.c;
    }
    return undefined;
  }, 30_000);
}

/** The leader's id and a client of another replica (the one the test talks to). */
async function leaderAndFollower(): Promise<{ leader: string; follower: ControlServiceClient }> {
  return eventually(async () => {
    const leader = (await call(await live(), "getVersion", {}, 2000)).leader;
    const f = cl.controllers.find((r) => r.id !== leader);
    if (!leader || !f) return undefined;
    const ok = await call(f.c, "getVersion", {}, 1000).then(
      () => true,
      () => false,
    );
    return ok ? { leader, follower: f.c } : undefined;
  }, 60_000);
}

/** All six nodes hold base@v (origin local, the rest hydrated), by their heartbeats. */
async function onAllNodes(c: ControlServiceClient, ref: string): Promise<void> {
  await eventually(
    async () => {
      const nodes = (await call(c, "listNodes", {})).nodes;
      return NODES.every((n) => nodes.find((x) => x.name === n)?.baseVersions.includes(ref));
    },
    90_000,
    250,
  );
  const atts = (await cl.etcd("attachments/")).filter((a) => `${a.base}@${a.version}` === ref);
  expect(atts.map((a) => a.node).sort()).toEqual(NODES.slice(1));
  expect(atts.every((a) => a.phase === "ATTACHMENT_PHASE_LOCAL")).toBe(true);
}

/** The push record of base@v: its passes and the replica that ran the last. */
async function pushRecord(base: string, v: number) {
  const recs = await cl.etcd("operations/");
  return recs.find((r) => {
    const p = (r.spec as { push?: { base: string; version: number } }).push;
    return p?.base === base && p.version === v;
  }) as { status: { phase: string; passes: number; controller: string } } | undefined;
}

/**
 * Pushes kb@v to every node through a follower, SIGKILLs the leader when
 * `killAt` says so (the kill happens once), waits for the push to end, and
 * restarts the killed replica.
 */
async function pushKillingLeader(v: number, killAt: (p: PushProgress | "record") => boolean) {
  const { leader, follower } = await leaderAndFollower();
  await writeFile(join(rootfs, "etc/motd"), `kill ${v}\n`);
  await importBaseFromDir(follower, "a1", "kb", rootfs);
  let killed: Promise<void> | undefined;
  const kill = () => {
    killed ??= cl.killController(leader);
  };
  const stream = follower.pushBase({
    ref: { name: "kb", version: v },
    nodes: [],
    all: true,
    selector: {},
    fanout: 2,
    transport: "",
    waitLocal: true,
  });
  stream.on("data", (p: PushProgress) => {
    if (!p.done && killAt(p)) kill();
  });
  // passes the killed leader had recorded: a leader killed right after the record is written may
  // not have begun its pass (then the next leader's pass is the first)
  let passesAtKill = 1;
  if (killAt("record")) {
    await eventually(async () => !!(await pushRecord("kb", v)), 30_000, 20);
    kill();
    await killed;
    const r = await pushRecord("kb", v);
    passesAtKill = r?.status.controller === leader ? r.status.passes : 0;
  }
  await streamed(stream);
  expect(killed, "the leader was killed during the push").toBeDefined();
  await killed;
  await onAllNodes(follower, `kb@${v}`);
  const rec = await pushRecord("kb", v);
  expect(rec?.status.phase).toBe("succeeded");
  // finished by a later leader, by a pass like any other (no resume path exists)
  expect(rec?.status.controller).not.toBe(leader);
  expect(rec?.status.passes).toBeGreaterThanOrEqual(passesAtKill + 1);
  // the killed replica comes back as a follower for the next case
  await eventually(async () => {
    const r = cl.controllers.find((x) => x.id === leader)!;
    return call(r.c, "getVersion", {}, 1000).then(
      () => true,
      () => false,
    );
  }, 90_000);
}

const is = (p: PushProgress | "record", phase: AttachmentPhase) => p !== "record" && p.phase === phase;

it("a 6-node push completes when the leader dies right after the record is written", async () => {
  await pushKillingLeader(1, (p) => p === "record");
}, 180_000);

it("a 6-node push completes when the leader dies mid fan-out", async () => {
  await pushKillingLeader(2, (p) => is(p, AttachmentPhase.ATTACHMENT_PHASE_ATTACHED));
}, 180_000);

it("a 6-node push completes when the leader dies mid hydration", async () => {
  await pushKillingLeader(3, (p) => is(p, AttachmentPhase.ATTACHMENT_PHASE_HYDRATING));
}, 180_000);

it("lab up completes when the leader dies while its machines are placed", async () => {
  const { leader, follower } = await leaderAndFollower();
  // machines on base kb: nodes lacking nothing (kb@3 is everywhere), so placement is the work
  const spec = `name: kl
networks:
  red: 10.78.1.0/24
machines:
  m-{1..3}: { base: kb, networks: [red] }
`;
  let killed: Promise<void> | undefined;
  const stream = follower.applyLab(
    { specYaml: spec, wait: true, dryRun: false },
    { deadline: new Date(Date.now() + 150_000) },
  );
  // the first progress line: the lab's record is written and its machines are being placed
  stream.on("data", () => {
    killed ??= cl.killController(leader);
  });
  await streamed(stream);
  expect(killed).toBeDefined();
  await killed;
  const envs = (await call(follower, "listEnvs", { node: "", group: "" })).envs.filter((e) =>
    e.spec?.name.startsWith("kl-"),
  );
  expect(envs.map((e) => e.spec?.name).sort()).toEqual(["kl-m-1", "kl-m-2", "kl-m-3"]);
  expect(envs.every((e) => e.status?.phase === EnvPhase.ENV_PHASE_RUNNING)).toBe(true);
  // peers by name across the takeover: /etc/hosts written
  const hosts = await execIn(follower, "kl-m-1", ["cat", "/etc/hosts"]);
  expect(hosts.stdout).toMatch(/\bm-2\b/);
  expect(hosts.stdout).toMatch(/\bm-3\b/);
}, 180_000);

const newPeerEnv = (m: string) => `kl-${m}`;

/** The lab record's rollout as etcd holds it. */
async function labRollout(): Promise<{ create: string[]; replace: string[]; remove: string[] } | undefined> {
  const rec = (await cl.etcd("lab-state/")).find((r) => (r.state as { name: string }).name === "kl");
  return rec?.rollout as { create: string[]; replace: string[]; remove: string[] } | undefined;
}

/**
 * Applies a changed `kl` through a follower and SIGKILLs the leader once
 * `killWhen` holds for the record's rollout; the lab must end converged:
 * every machine running, each kept machine's /etc/hosts naming `newPeer`.
 */
async function applyKillingLeader(
  spec: string,
  machines: string[],
  kept: string[],
  newPeer: string,
  killOn: "record" | "hosts",
) {
  const { leader, follower } = await leaderAndFollower();
  const before = new Map(
    (await call(follower, "listEnvs", { node: "", group: "kl" })).envs.map((e) => [
      e.spec!.name,
      e.status!.leaderPid,
    ]),
  );
  const stream = follower.applyLab(
    { specYaml: spec, wait: true, dryRun: false },
    { deadline: new Date(Date.now() + 150_000) },
  );
  let killed: Promise<void> | undefined;
  const kill = async () => {
    const r = await labRollout();
    const left = r ? r.create.length + r.replace.length + r.remove.length : -1;
    console.log(`killing the leader (${killOn}) with ${left} env(s) of the rollout left`);
    await cl.killController(leader);
  };
  // the first /etc/hosts line: kept machines rewritten, the replacement waiting for its old env to go
  stream.on("data", (p: LabProgress) => {
    if (killOn === "hosts" && p.action === "hosts") killed ??= kill();
  });
  const done = streamed(stream);
  if (killOn === "record") {
    await eventually(async () => (await labRollout())?.create.includes(newPeerEnv(newPeer)), 60_000, 10);
    killed = kill();
  }
  await done;
  expect(killed, "the leader was killed during lab up").toBeDefined();
  await killed;
  const envs = (await call(follower, "listEnvs", { node: "", group: "kl" })).envs;
  expect(envs.map((e) => e.spec?.name).sort()).toEqual(machines.map((m) => `kl-${m}`).sort());
  expect(envs.every((e) => e.status?.phase === EnvPhase.ENV_PHASE_RUNNING)).toBe(true);
  const r = await labRollout();
  expect([r?.create, r?.replace, r?.remove]).toEqual([[], [], []]);
  for (const m of kept) {
    // kept as it was (same machine), its /etc/hosts rewritten in place by whichever leader came next
    const now = envs.find((e) => e.spec?.name === `kl-${m}`);
    expect(now?.status?.leaderPid, m).toBe(before.get(`kl-${m}`));
    const hosts = await eventually(async () => {
      const out = (await execIn(follower, `kl-${m}`, ["cat", "/etc/hosts"])).stdout;
      return new RegExp(`\\b${newPeer}\\b`).test(out) ? out : undefined;
    }, 30_000);
    expect(hosts).toMatch(new RegExp(`\\b${newPeer}\\b`));
  }
  await eventually(async () => {
    const x = cl.controllers.find((c) => c.id === leader)!;
    return call(x.c, "getVersion", {}, 1000).then(
      () => true,
      () => false,
    );
  }, 90_000);
}

it("a changed lab converges when the leader dies right after its record is written", async () => {
  // m-3 changed (replaced), m-4 new: m-1 and m-2 are kept and learn of m-4
  const spec = `name: kl
networks:
  red: 10.78.1.0/24
machines:
  m-{1..2}: { base: kb, networks: [red] }
  m-3: { base: kb, networks: [red], env: { V: "2" } }
  m-4: { base: kb, networks: [red] }
`;
  await applyKillingLeader(spec, ["m-1", "m-2", "m-3", "m-4"], ["m-1", "m-2"], "m-4", "record");
}, 240_000);

it("a changed lab converges when the leader dies while it creates and rewrites /etc/hosts", async () => {
  // m-2 changed (replaced), m-5 new: m-1, m-3 and m-4 are kept and learn of m-5
  const spec = `name: kl
networks:
  red: 10.78.1.0/24
machines:
  m-1: { base: kb, networks: [red] }
  m-2: { base: kb, networks: [red], env: { V: "3" } }
  m-3: { base: kb, networks: [red], env: { V: "2" } }
  m-{4..5}: { base: kb, networks: [red] }
`;
  await applyKillingLeader(spec, ["m-1", "m-2", "m-3", "m-4", "m-5"], ["m-1", "m-3", "m-4"], "m-5", "hosts");
}, 240_000);
