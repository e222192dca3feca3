/** The in-memory export driver keeps the ExportDriver contract the real one keeps. */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportContract } from "../../contracts/export-contract.js";
import { FakeExports } from "../../fakes/fake-exports.js";

exportContract("fake", async () => {
  const scratch = await mkdtemp(join(tmpdir(), "protoctl-fake-exports-"));
  return {
    driver: new FakeExports(),
    scratch,
    async subvolume(name) {
      await mkdir(join(scratch, "subvolumes", name), { recursive: true });
      return join(scratch, "subvolumes", name);
    },
    cleanup: () => rm(scratch, { recursive: true, force: true }),
  };
});
