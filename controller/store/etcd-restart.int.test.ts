/**
 * The store rides out an etcd restart (one member, SIGKILL, back on the same
 * data dir and ports): calls in flight are retried and succeed, or fail as
 * UNAVAILABLE naming the store, never with the client library's own
 * "circuit breaker is open"; and the first call made once etcd answers again
 * goes through (no breaker holding calls back after the return).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import { freePort } from "../../test/fixtures/ports.js";
import { ClusterStore } from "./store.js";

let dir: string;
let ports: { client: number; peer: number };
let etcd: ChildProcess | undefined;

function startEtcd(): ChildProcess {
  const c = `http://127.0.0.1:${ports.client}`;
  const p = `http://127.0.0.1:${ports.peer}`;
  return spawn(
    "etcd",
    [
      ...["--name", "restart", "--data-dir", join(dir, "data"), "--log-level", "error"],
      ...["--listen-client-urls", c, "--advertise-client-urls", c],
      ...["--listen-peer-urls", p, "--initial-advertise-peer-urls", p, "--initial-cluster", `restart=${p}`],
    ],
    { stdio: "ignore" },
  );
}

async function healthy(): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${ports.client}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("etcd did not come back");
}

async function kill(c: ChildProcess | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise((r) => c.once("exit", r));
  c.kill("SIGKILL");
  await gone;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-etcd-restart-"));
  ports = { client: await freePort(), peer: await freePort() };
  etcd = startEtcd();
  await healthy();
});

afterAll(async () => {
  await kill(etcd);
  await rm(dir, { recursive: true, force: true });
});

describe("an etcd restart under the store", () => {
  it("retries calls in flight, never surfaces the breaker, and serves at once after the return", async () => {
    const store = new ClusterStore({ endpoints: [`http://127.0.0.1:${ports.client}`], prefix: "/restart/" });
    try {
      await store.client.put("/restart/k").value("before");
      // A stream of writes and reads, one every 20 ms, across the outage.
      const outcomes: Array<"ok" | ProtoctlError> = [];
      let stop = false;
      const inFlight: Promise<void>[] = [];
      const pump = (async () => {
        for (let i = 0; !stop; i++) {
          inFlight.push(
            (i % 2
              ? store.client.get("/restart/k").string()
              : store.client.put(`/restart/w${i}`).value("x")
            ).then(
              () => {
                outcomes.push("ok");
              },
              (e: unknown) => {
                outcomes.push(ProtoctlError.from(e));
              },
            ),
          );
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      await new Promise((r) => setTimeout(r, 200));
      await kill(etcd);
      await new Promise((r) => setTimeout(r, 1500));
      etcd = startEtcd();
      await healthy();
      // The first call after etcd's return goes through.
      expect(await store.client.get("/restart/k").string()).toBe("before");
      stop = true;
      await pump;
      await Promise.all(inFlight);

      const failures = outcomes.filter((o): o is ProtoctlError => o !== "ok");
      for (const f of failures) {
        expect(f.code).toBe(Code.UNAVAILABLE);
        expect(f.message).toMatch(/cluster store \(etcd\) is not answering/);
        expect(f.message).not.toMatch(/circuit breaker/);
      }
      // Calls issued during the 1.5 s outage waited it out (the retries last ~8 s).
      expect(failures).toEqual([]);
      expect(outcomes.length).toBeGreaterThan(20);
    } finally {
      await store.close();
    }
  });
});
