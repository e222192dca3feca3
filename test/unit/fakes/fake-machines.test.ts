/** The in-memory machine driver keeps the MachineDriver contract the nspawn driver keeps. */

import { machineContract } from "../../contracts/machine-contract.js";
import { FakeMachines } from "../../fakes/fake-machines.js";

machineContract("fake", async () => ({
  driver: new FakeMachines(),
  rootDir: async (name) => `/fake-roots/${name}`,
  cleanup: async () => undefined,
}));
