/**
 * A one-member etcd inside a test host's network namespace (client port 2379,
 * peer port 2380 on the host's address), for tests that run controllers and
 * agents as real processes in separate namespaces.
 */
import type { ChildProcess } from "node:child_process";
import type { TestHost, TestHosts } from "../../fixtures/hosts.js";
import { eventually } from "./cluster.js";

/**
 * Starts etcd through `spawnIn` (the caller's own spawner, so the caller keeps
 * track of the process and stops it) and waits until it reports healthy.
 */
export async function startHostEtcd(
  hosts: TestHosts,
  h: TestHost,
  name: string,
  dataDir: string,
  spawnIn: (args: string[]) => ChildProcess,
): Promise<{ url: string; process: ChildProcess }> {
  const url = `http://${h.address}:2379`;
  const peer = `http://${h.address}:2380`;
  const process = spawnIn([
    "etcd",
    "--name",
    name,
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    url,
    "--advertise-client-urls",
    url,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `${name}=${peer}`,
    "--log-level",
    "error",
  ]);
  await eventually(
    async () =>
      (
        await hosts.exec(h, "etcdctl", ["--endpoints", url, "endpoint", "health"], {
          allowFailure: true,
          env: { ETCDCTL_API: "3" },
        })
      ).exitCode === 0,
    20_000,
    100,
  );
  return { url, process };
}
