/** The in-memory pool keeps the PoolDriver contract the btrfs pool keeps. */
import { poolContract } from "../../contracts/pool-contract.js";
import { FakePool } from "../../fakes/fake-pool.js";

poolContract("fake", async () => {
  const pool = new FakePool();
  return { pool, rootfs: "/fake-rootfs", cleanup: () => pool.destroy() };
});
