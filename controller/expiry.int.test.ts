/**
 * Expiry across failover: two controller processes on one etcd, fake
 * agents. An env created with a 5 s ttl is deleted by whichever replica
 * leads when the time comes, after a SIGKILL of the leader that recorded
 * it; the deletion emits `env.expired`. A second env extended meanwhile
 * outlives the first (extend moves the desired state, not a timer).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { EnvPhase } from "../proto/gen/protoctl/v1/types.js";
import { startEtcd, type TestEtcd } from "../test/fixtures/etcd.js";
import { call, eventually, testEnvSpec } from "../test/support/controller/cluster.js";
import { startHaPair } from "../test/support/controller/ha-pair.js";
import { ClusterStore } from "./store/store.js";

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

const ELECTION_TTL_S = 2;

it("an env with ttl 5s is deleted after expiry across a leader kill, with an event; extend postpones it", async () => {
  const ha = await startHaPair(etcd, {
    ids: ["ttl-a", "ttl-b"],
    nodes: ["n1"],
    electionTtlSeconds: ELECTION_TTL_S,
  });
  const { leader, survivor, agents, prefix } = ha;
  const lc = ha.client(leader);
  const sc = ha.client(survivor);
  try {
    // recorded by the leader; a bad ttl changes nothing
    await expect(
      call(lc, "createEnv", { spec: testEnvSpec("bad-ttl"), wait: false, ttlMs: 100 * 365 * 86_400_000 }),
    ).rejects.toThrow(/ttl/);
    const created = await call(lc, "createEnv", { spec: testEnvSpec("short"), wait: true, ttlMs: 5000 });
    const kept = await call(lc, "createEnv", { spec: testEnvSpec("kept"), wait: true, ttlMs: 5000 });
    const plain = await call(lc, "createEnv", { spec: testEnvSpec("plain"), wait: true });
    expect(created.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    expect(plain.spec?.expiresMs ?? 0).toBe(0);
    const expiresMs = created.spec!.expiresMs!;
    expect(expiresMs).toBeGreaterThan(Date.now());
    expect(expiresMs).toBeLessThanOrEqual(Date.now() + 5000);
    expect(await call(lc, "getEnv", { name: "bad-ttl" }).catch((e: Error) => e.message)).toMatch(
      /no env named bad-ttl/,
    );
    const extended = await call(lc, "extendEnv", { name: "kept", byMs: 60_000 });
    expect(extended.spec!.expiresMs!).toBeGreaterThanOrEqual(kept.spec!.expiresMs! + 60_000);
    await expect(call(lc, "extendEnv", { name: "plain", byMs: 1000 })).rejects.toThrow(/no ttl/);

    await leader.kill();
    const goneAt = await eventually(
      async () => {
        const names = (await call(sc, "listEnvs", { node: "", group: "" })).envs.map((e) => e.spec?.name);
        return names.includes("short") ? undefined : Date.now();
      },
      30_000,
      50,
    );
    const late = goneAt - expiresMs;
    console.log(`env gone ${late} ms after its expiry (leader killed; election ttl ${ELECTION_TTL_S} s)`);
    expect(goneAt).toBeGreaterThanOrEqual(expiresMs);
    // gone within the lease period after expiry (plus time to stop the env on its agent and poll)
    expect(late).toBeLessThan(ELECTION_TTL_S * 1000 + 5000);
    expect(agents[0]!.envs.has("short")).toBe(false);
    const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix });
    try {
      const evs = (await store.events.list()).events;
      expect(evs.some((e) => e.kind === "env.expired" && e.subject === "env/short")).toBe(true);
      expect(await store.envSpecs.get("kept")).toBeDefined();
      expect(await store.envSpecs.get("plain")).toBeDefined();
    } finally {
      await store.close();
    }
    const names = (await call(sc, "listEnvs", { node: "", group: "" })).envs.map((e) => e.spec?.name).sort();
    expect(names).toEqual(["kept", "plain"]);
  } finally {
    expect(await ha.stop()).toBe(0);
  }
});
