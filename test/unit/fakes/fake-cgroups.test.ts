/** The in-memory cgroup driver keeps the CgroupDriver contract HostCgroups keeps. */
import { cgroupContract } from "../../contracts/cgroup-contract.js";
import { FakeCgroups } from "../../fakes/fake-cgroups.js";

cgroupContract("fake", async () => {
  const driver = new FakeCgroups();
  return {
    driver,
    node: "n1",
    spawnIn: async (files) => driver.join(files),
    alive: (pid) => driver.live.has(pid),
    cleanup: async () => undefined,
  };
});
