/**
 * Can this host run machines right now? (issue 17 item 8) An agent started
 * under `ip netns exec` gets a fresh /sys in its mount namespace, without
 * /sys/fs/cgroup mounted: nspawn then fails every start with "Failed to
 * determine whether the unified cgroups hierarchy is used: No medium found".
 * The agent reports that as its "machines" capability, not ok, and the
 * controller shows the node NotReady with the reason instead of placing
 * envs on it. Read from /proc/self/mountinfo: no process spawned, cheap
 * enough for every inventory.
 */
import { readMounts } from "../pool/mounts.js";

export const MACHINES_CAPABILITY = "machines";

/** Why machines cannot run here, or undefined when they can. */
export async function machinesProblem(
  mountinfo?: () => Promise<Array<{ mountpoint: string; fstype: string }>>,
): Promise<string | undefined> {
  const mounts = await (mountinfo ?? readMounts)();
  const cg = mounts.filter((m) => m.mountpoint === "/sys/fs/cgroup").at(-1);
  if (!cg) {
    return "/sys/fs/cgroup is not mounted in the agent's mount namespace (started under `ip netns exec`?): systemd-nspawn cannot start machines; run the agent with the host's /sys (e.g. nsenter --net=… instead)";
  }
  if (cg.fstype !== "cgroup2" && cg.fstype !== "tmpfs") {
    return `/sys/fs/cgroup is a ${cg.fstype}, not a cgroup hierarchy: systemd-nspawn cannot start machines`;
  }
  if (
    cg.fstype === "tmpfs" &&
    !mounts.some((m) => m.mountpoint.startsWith("/sys/fs/cgroup/") && m.fstype.startsWith("cgroup"))
  ) {
    return "/sys/fs/cgroup has no cgroup hierarchy mounted below it: systemd-nspawn cannot start machines";
  }
  return undefined;
}
