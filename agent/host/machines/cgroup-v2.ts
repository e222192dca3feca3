/**
 * Env cgroups on a pure cgroup v2 host (see common/cgroup-mode.ts for the
 * mode). Each env is `<base>/protoctl/<node>/<env>`, where `<base>` is the
 * agent's own cgroup: under systemd that is the agent unit's cgroup, which
 * `Delegate=yes` hands to us (deploy/systemd/protoctl-agent.service), so we
 * only ever write below it.
 *
 * The kernel's "no internal processes" rule: a (non-root) cgroup that enables
 * controllers for its children in cgroup.subtree_control may not hold
 * processes. So the first env moves every process of `<base>` (the agent and
 * whatever it started there: `protoctl up`'s etcd and controller) into the
 * leaf `<base>/protoctl-agent`, then enables memory, cpu and pids in
 * `<base>`, `<base>/protoctl` and `<base>/protoctl/<node>`. We chose this over
 * a dedicated second subtree (a `protoctl.slice` made by systemd): it needs no
 * system bus and works the same without systemd (then `<base>` is wherever
 * the agent was started, the root cgroup included).
 *
 * Limits are written on the env's dir; nspawn, started inside it, makes its
 * own `supervisor` and `payload` children, which the limits cover.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { AGENT_LEAF, LIMIT_CONTROLLERS, parseControllers } from "../../../common/cgroup-mode.js";
import { failedPrecondition } from "../../../common/errors.js";
import type { MachineLimits } from "../interfaces.js";

const CPU_PERIOD_US = 100_000;

/** The v2 limit files to write on the env's dir, as [file, value] (pure). */
export function v2LimitWrites(limits: MachineLimits, hasSwap: boolean): Array<[string, string]> {
  const w: Array<[string, string]> = [];
  if (limits.memoryBytes && limits.memoryBytes > 0) {
    w.push(["memory.max", String(limits.memoryBytes)]);
    // as memsw on v1: the limit is the whole of it, no swap beyond
    if (hasSwap) w.push(["memory.swap.max", "0"]);
  }
  if (limits.cpus && limits.cpus > 0) {
    w.push(["cpu.max", `${Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US))} ${CPU_PERIOD_US}`]);
  }
  if (limits.pids && limits.pids > 0) w.push(["pids.max", String(limits.pids)]);
  return w;
}

/**
 * The subtree_control write that enables what is missing of `want` among
 * `available` (pure): e.g. "+memory +pids", or "" when nothing is to do.
 */
export function subtreeControlWrite(
  current: readonly string[],
  available: readonly string[],
  want: readonly string[] = LIMIT_CONTROLLERS,
): string {
  return want
    .filter((c) => available.includes(c) && !current.includes(c))
    .map((c) => `+${c}`)
    .join(" ");
}

function read(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function readPids(dir: string): number[] {
  return read(join(dir, "cgroup.procs"))
    .split("\n")
    .filter((p) => p !== "")
    .map(Number);
}

/**
 * Moves every process of `base` into its leaf, so `base` may enable
 * controllers. Processes can fork while we move them: repeat until empty.
 */
function emptyIntoLeaf(base: string): void {
  const leaf = join(base, AGENT_LEAF);
  mkdirSync(leaf, { recursive: true });
  for (let round = 0; round < 50; round++) {
    const pids = readPids(base);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        writeFileSync(join(leaf, "cgroup.procs"), String(pid));
      } catch (err) {
        // gone in between: fine; anything else is kept for the error below
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      }
    }
  }
  throw failedPrecondition(
    `processes keep appearing in cgroup ${base}; cannot make it a parent of env cgroups`,
    {
      reason: "CGROUP_NOT_DELEGATED",
    },
  );
}

/** Enables the limit controllers in `dir`'s subtree_control (after emptying it, for `base`). */
function enableControllers(dir: string, isBase: boolean, isRoot: boolean): void {
  const file = join(dir, "cgroup.subtree_control");
  const write = subtreeControlWrite(
    parseControllers(read(file)),
    parseControllers(read(join(dir, "cgroup.controllers"))),
  );
  if (write === "") return;
  if (isBase && !isRoot) emptyIntoLeaf(dir);
  try {
    writeFileSync(file, write);
  } catch (err) {
    throw failedPrecondition(
      `cannot enable ${write} in ${file}: ${(err as Error).message}; run the agent in a cgroup of its own with the controllers delegated (systemd: Delegate=yes, as deploy/systemd/protoctl-agent.service)`,
      { reason: "CGROUP_NOT_DELEGATED" },
    );
  }
}

/** Makes `<base>/protoctl/<node>` ready to hold env cgroups with limits, then the env's dir. */
export function prepareV2Tree(base: string, envDir: string, cgroupRoot: string): void {
  const nodeDir = join(envDir, "..");
  const parents = [base, join(base, "protoctl"), nodeDir];
  for (const [i, dir] of parents.entries()) {
    if (i > 0) mkdirSync(dir, { recursive: true });
    enableControllers(dir, i === 0, resolve(dir) === cgroupRoot);
  }
  mkdirSync(envDir, { recursive: true });
}

/** Memory usage and OOM kills of an env's v2 cgroup. */
export function v2MemoryStats(dir: string): { usageBytes: number; oomKills: number } | undefined {
  const cur = read(join(dir, "memory.current"));
  if (cur === "") return undefined;
  const oomKills = Number(/^oom_kill (\d+)$/m.exec(read(join(dir, "memory.events")))?.[1] ?? 0);
  return { usageBytes: Number(cur), oomKills };
}
