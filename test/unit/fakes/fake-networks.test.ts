/** The in-memory host networks keep the HostNetworks contract NetworkDriver keeps. */
import { networkContract } from "../../contracts/network-contract.js";
import { FakeNetworks } from "../../fakes/fake-networks.js";

networkContract("fake", async () => ({ networks: new FakeNetworks(), cleanup: async () => undefined }));
