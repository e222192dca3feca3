/** NetworkDriver keeps the HostNetworks contract (the fake's suite), in a namespace made here. */
import { randomBytes } from "node:crypto";
import { run } from "../../../common/exec.js";
import { networkContract } from "../../../test/contracts/network-contract.js";
import { NetworkDriver } from "./network-driver.js";

networkContract("ip/bridge", async () => {
  const ns = `pt-nc-${randomBytes(3).toString("hex")}`;
  await run("ip", ["netns", "add", ns]);
  return {
    networks: new NetworkDriver(ns),
    cleanup: async () => {
      await run("ip", ["netns", "del", ns], { allowFailure: true });
    },
  };
});
