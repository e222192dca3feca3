/** The nspawn driver keeps the MachineDriver contract (the same suite the fake passes). */
import { randomBytes } from "node:crypto";
import { silentLogger } from "../../../common/logger.js";
import { machineContract } from "../../../test/contracts/machine-contract.js";
import { makeMachineTestBed } from "../../../test/support/agent/machines.js";
import { NspawnMachineDriver } from "./nspawn-driver.js";

machineContract("systemd-nspawn", async () => {
  const bed = await makeMachineTestBed();
  const roots = new Map<string, string>();
  return {
    driver: new NspawnMachineDriver({
      node: `mc${randomBytes(2).toString("hex")}`,
      stateDir: bed.stateDir,
      logger: silentLogger(),
    }),
    async rootDir(name) {
      const have = roots.get(name);
      if (have) return have;
      const dir = await bed.envRoot(name.toLowerCase());
      roots.set(name, dir);
      return dir;
    },
    cleanup: () => bed.cleanup(),
  };
});
