/**
 * Env cgroups on a pure cgroup v2 host whose PID 1 is systemd: each env's
 * nspawn runs in a transient scope of its own, `protoctl.slice/
 * protoctl_<node>_<env>.scope`, made by `systemd-run --scope` with
 * `Delegate=yes` and the limits as unit properties.
 *
 * Why not below the agent unit's cgroup (cgroup-v2.ts) there: systemd 252
 * (Debian 12) starts a restarted unit's new main process in the unit's own
 * cgroup, and once that cgroup has controllers enabled for env children the
 * kernel's "no internal processes" rule refuses it (EBUSY), so
 * `systemctl restart protoctl-agent` would fail while envs run.
 * `DelegateSubgroup=` only came with systemd 254. A scope per env lives
 * outside the agent's unit: a restart, `KillMode=`, or a stopped agent never
 * touch it, and systemd itself enables the controllers its properties need.
 *
 * `systemd-run` talks to systemd over its private socket as root, so this
 * needs no D-Bus daemon. The `_` separators cannot occur in node or env names
 * (names.ts), so a scope's name maps back to one env.
 */
import { readdirSync } from "node:fs";
import { systemdScopesUsable } from "../../../common/cgroup-mode.js";
import type { MachineLimits } from "../interfaces.js";

export const SCOPES_KEY = "systemd-scopes";
export const SCOPE_SLICE = "protoctl.slice";
const CPU_PERIOD_US = 100_000;

export { systemdScopesUsable };

export function scopeUnit(node: string, env: string): string {
  return `protoctl_${node}_${env}.scope`;
}

/** The env name of a scope dir of this node, or undefined (pure). */
export function envOfScope(node: string, entry: string): string | undefined {
  const prefix = `protoctl_${node}_`;
  if (!entry.startsWith(prefix) || !entry.endsWith(".scope")) return undefined;
  const env = entry.slice(prefix.length, -".scope".length);
  return /^[a-z0-9][a-z0-9-]{0,62}$/.test(env) ? env : undefined;
}

/** `systemd-run` properties for the limits (pure); the same values cgroup-v2.ts writes itself. */
export function scopeProperties(limits: MachineLimits | undefined): string[] {
  const p = ["Delegate=yes"];
  if (!limits) return p;
  if (limits.memoryBytes && limits.memoryBytes > 0)
    p.push(`MemoryMax=${limits.memoryBytes}`, "MemorySwapMax=0");
  if (limits.cpus && limits.cpus > 0) {
    // CPUQuota is a percentage of one CPU; systemd writes cpu.max with a 100 ms period
    const quotaUs = Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US));
    const pct = quotaUs / 1000;
    p.push(`CPUQuota=${Number.isInteger(pct) ? pct : pct.toFixed(2)}%`);
  }
  if (limits.pids && limits.pids > 0) p.push(`TasksMax=${limits.pids}`);
  return p;
}

/** The argv prefix that runs the rest in the env's new scope (pure). */
export function scopeRunArgv(node: string, env: string, limits: MachineLimits | undefined): string[] {
  return [
    "systemd-run",
    "--scope",
    "--quiet",
    "--collect",
    `--slice=${SCOPE_SLICE}`,
    `--unit=${scopeUnit(node, env)}`,
    ...scopeProperties(limits).map((p) => `--property=${p}`),
    "--",
  ];
}

/** Env names with a scope dir of this node under the slice dir. */
export function listScopeEnvs(sliceDir: string, node: string): string[] {
  try {
    return readdirSync(sliceDir)
      .map((e) => envOfScope(node, e))
      .filter((e): e is string => e !== undefined);
  } catch {
    return [];
  }
}
