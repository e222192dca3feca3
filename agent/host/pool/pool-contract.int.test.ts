/** The btrfs pool keeps the PoolDriver contract (the fake's suite), on a tmpfs pool made here. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../../common/logger.js";
import { poolContract } from "../../../test/contracts/pool-contract.js";
import { makeBusyboxRootfs } from "../../../test/fixtures/rootfs.js";
import { openPool } from "./pool.js";

poolContract("btrfs", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-pool-contract-"));
  const rootfs = await makeBusyboxRootfs(join(stateDir, "rootfs"));
  const pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 256 * 1024 * 1024 }, silentLogger());
  return {
    pool,
    rootfs,
    async cleanup() {
      await pool.destroy();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
});
