/** The in-memory machine driver keeps the MachineDriver contract the nspawn driver keeps. */

import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machineContract } from "../../contracts/machine-contract.js";
import { FakeMachines } from "../../fakes/fake-machines.js";

machineContract("fake", async () => {
  const dir = await mkdtemp(join(tmpdir(), "protoctl-fake-machines-"));
  return {
    driver: new FakeMachines(),
    rootDir: async (name) => {
      await mkdir(join(dir, name), { recursive: true });
      return join(dir, name);
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
