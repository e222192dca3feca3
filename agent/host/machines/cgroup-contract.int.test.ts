/** HostCgroups (this host's hierarchies) keeps the CgroupDriver contract the fake keeps. */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ResultPromise } from "execa";
import { spawnProcess } from "../../../common/exec.js";
import { cgroupContract } from "../../../test/contracts/cgroup-contract.js";
import { HostCgroups } from "./host-cgroups.js";
import { wrapInCgroups } from "./nspawn-args.js";

cgroupContract("host hierarchies", async () => {
  const driver = new HostCgroups();
  const node = `cg${randomBytes(3).toString("hex")}`;
  const children: ResultPromise[] = [];
  return {
    driver,
    node,
    async spawnIn(procsFiles) {
      // the same join nspawn's wrapper does, then a process that waits to be killed
      const child = spawnProcess("sh", wrapInCgroups(procsFiles, ["sleep", "600"]), {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
        reject: false,
      });
      children.push(child);
      return child.pid!;
    },
    alive(pid) {
      // a killed child stays a zombie until reaped: count it as gone
      try {
        return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
      } catch {
        return false;
      }
    },
    async cleanup() {
      for (const env of driver.listEnvs(node)) await driver.removeSettled(driver.envSet(node, env));
      for (const c of children) {
        c.kill("SIGKILL");
        await c;
      }
    },
  };
});
