/**
 * Two controller processes on one etcd with fake agents joined to both: the
 * set-up of the failover tests (ha.int.test.ts, expiry.int.test.ts). The
 * leader is whichever replica won the election; `stop()` takes everything
 * down and purges the cluster's keys, returning how many are left.
 */
import { ClusterStore } from "../../../controller/store/store.js";
import type { ControlServiceClient } from "../../../proto/gen/protoctl/v1/control.js";
import { NodeState } from "../../../proto/gen/protoctl/v1/types.js";
import type { TestEtcd } from "../../fixtures/etcd.js";
import { type FakeAgent, sealFakeBases } from "../../harness/fake-agent.js";
import { call, client, eventually, joinAgents, REUSABLE, uniquePrefix } from "./cluster.js";
import { type ControllerProcess, spawnController } from "./process.js";

export interface HaPair {
  prefix: string;
  leader: ControllerProcess;
  survivor: ControllerProcess;
  agents: FakeAgent[];
  client(p: ControllerProcess): ControlServiceClient;
  /** Stops agents and controllers, purges the prefix; resolves to the keys left (0 when clean). */
  stop(): Promise<number>;
}

export async function startHaPair(
  etcd: TestEtcd,
  opts: { ids: [string, string]; nodes: string[]; electionTtlSeconds?: number },
): Promise<HaPair> {
  const prefix = uniquePrefix();
  const cfg = (id: string) => ({
    id,
    listen: "127.0.0.1:0",
    insecure: true,
    etcd: { endpoints: [etcd.endpoint], prefix },
    membership: { leaseTtlSeconds: 3, heartbeatIntervalMs: 500 },
    reconcile: {
      electionTtlSeconds: opts.electionTtlSeconds ?? 2,
      lostGraceSeconds: 30,
      backoffBaseMs: 50,
      backoffMaxMs: 1000,
    },
  });
  const procs: ControllerProcess[] = [];
  const clients = new Map<string, ControlServiceClient>();
  let agents: FakeAgent[] = [];
  const stop = async () => {
    for (const c of clients.values()) c.close();
    for (const a of agents) await a.stop();
    for (const p of procs) await p.stop();
    const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix });
    try {
      await store.purge();
      return await store.kv.count(prefix);
    } finally {
      await store.close();
    }
  };
  try {
    for (const id of opts.ids) procs.push(await spawnController(cfg(id)));
    for (const p of procs) clients.set(p.id, client(p.address));
    const first = clients.get(opts.ids[0])!;
    const leaderId = await eventually(async () => (await call(first, "getVersion", {})).leader || undefined);
    const leader = procs.find((p) => p.id === leaderId)!;
    const survivor = procs.find((p) => p.id !== leaderId)!;
    const { token } = await call(first, "createJoinToken", { ttlSeconds: 120, labels: {}, ...REUSABLE });
    const specs = opts.nodes.map((name) => ({ name }));
    await sealFakeBases({ endpoint: etcd.endpoint, prefix }, specs);
    agents = await joinAgents(
      procs.map((p) => p.address),
      token,
      specs,
    );
    const sc = clients.get(survivor.id)!;
    await eventually(
      async () =>
        (await call(sc, "listNodes", {})).nodes.filter((n) => n.state === NodeState.NODE_STATE_READY)
          .length === opts.nodes.length,
    );
    return { prefix, leader, survivor, agents, client: (p) => clients.get(p.id)!, stop };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
