/** The in-memory attachment driver keeps the AttachmentDriver contract SeedAttachments keeps. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachmentContract } from "../../contracts/attachment-contract.js";
import { FakeAttachments } from "../../fakes/fake-attachments.js";

attachmentContract("fake", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-fake-attachments-"));
  const driver = new FakeAttachments();
  const seed = { sizeBytes: 8 << 20, checksum: "blake3-4m:aa", subvolume: "ct@1" };
  const files = { "etc/motd": "base ct@1\n" };
  for (const uri of ["nbd://127.0.0.1:1001/ct%401", "nbd://127.0.0.1:1002/ct%401"]) {
    driver.sources.set(uri, { checksum: seed.checksum, subvolume: "ct@1", files });
  }
  driver.sources.set("nbd://127.0.0.1:1003/ct%401", { checksum: "blake3-4m:bb", subvolume: "ct@1", files });
  return {
    driver,
    seed,
    sources: ["nbd://127.0.0.1:1001/ct%401", "nbd://127.0.0.1:1002/ct%401"],
    corrupt: "nbd://127.0.0.1:1003/ct%401",
    dead: "nbd://127.0.0.1:9/ct%401",
    stateDir,
    cleanup: () => rm(stateDir, { recursive: true, force: true }),
  };
});
