import { constants } from "node:os";
import { describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { SpawnerError } from "../machines/spawner.js";
import { spawnerPoolError } from "./btrfs.js";

describe("spawnerPoolError", () => {
  it("makes a full pool POOL_FULL (ENOSPC, EDQUOT) and any other errno INTERNAL naming the step", () => {
    for (const errno of [constants.errno.ENOSPC, constants.errno.EDQUOT]) {
      const e = spawnerPoolError(new SpawnerError("ioctl", errno), "snapshot subvolume");
      expect(e).toMatchObject({
        code: Code.RESOURCE_EXHAUSTED,
        reason: "POOL_FULL",
        message: "the pool is full (snapshot subvolume)",
      });
    }
    const other = spawnerPoolError(
      new SpawnerError("limit", constants.errno.EINVAL),
      "limit /p/e to 5 bytes",
    );
    expect(other).toMatchObject({
      code: Code.INTERNAL,
      reason: "IOCTL_FAILED",
      message: "limit /p/e to 5 bytes: limit: EINVAL",
      metadata: { stage: "limit", errno: "EINVAL" },
    });
  });
});
