import { describe, expect, it } from "vitest";
import { machinesProblem } from "./host-check.js";

const table = (rows: Array<[string, string]>) => async () =>
  rows.map(([mountpoint, fstype]) => ({ mountpoint, fstype }));

describe("can this host run machines", () => {
  it("yes with cgroup v2, or v1/hybrid hierarchies under a tmpfs", async () => {
    expect(
      await machinesProblem(
        table([
          ["/", "ext4"],
          ["/sys/fs/cgroup", "cgroup2"],
        ]),
      ),
    ).toBeUndefined();
    expect(
      await machinesProblem(
        table([
          ["/sys/fs/cgroup", "tmpfs"],
          ["/sys/fs/cgroup/memory", "cgroup"],
          ["/sys/fs/cgroup/unified", "cgroup2"],
        ]),
      ),
    ).toBeUndefined();
  });

  it("no, with the reason, when /sys/fs/cgroup is missing (ip netns exec), empty or something else", async () => {
    expect(
      await machinesProblem(
        table([
          ["/", "ext4"],
          ["/sys", "sysfs"],
        ]),
      ),
    ).toMatch(/not mounted.*ip netns exec/);
    expect(await machinesProblem(table([["/sys/fs/cgroup", "tmpfs"]]))).toMatch(/no cgroup hierarchy/);
    expect(await machinesProblem(table([["/sys/fs/cgroup", "sysfs"]]))).toMatch(/not a cgroup hierarchy/);
  });

  it("reads this host's own table", async () => {
    // the machines running these tests run nspawn: their agents must say so
    expect(await machinesProblem()).toBeUndefined();
  });
});
