/** Seed images and nbdkit keep the ExportDriver contract (the fake's suite), on a test pool. */
import { join } from "node:path";
import { exportContract } from "../../../test/contracts/export-contract.js";
import { makeTestPool } from "../../../test/fixtures/pool.js";
import { makeBaseSubvolume } from "../../../test/support/agent/exports.js";
import { serveImage } from "./nbd-server.js";
import { publishSeedImage } from "./seed-image.js";

exportContract("btrfs seed + nbdkit", async () => {
  const pool = await makeTestPool({ sizeMiB: 256 });
  return {
    driver: { publish: publishSeedImage, serve: serveImage },
    scratch: join(pool.tmpfs, "scratch"),
    subvolume: (name) => makeBaseSubvolume(pool.mountpoint, name),
    cleanup: () => pool.cleanup(),
  };
});
