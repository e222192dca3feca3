/** SeedAttachments (nbdfuse, loop devices, a btrfs sprout) keeps the AttachmentDriver contract the fake keeps. */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { attachmentContract } from "../../../test/contracts/attachment-contract.js";
import { corruptCopy, makeOrigin } from "../../../test/support/agent/attachments.js";
import { makeTmpfsDir } from "../../../test/support/agent/exports.js";
import { serveImage } from "../exports/nbd-server.js";
import type { NbdExport } from "../exports/types.js";
import { SeedAttachments } from "./seed-attachments.js";

attachmentContract("nbdfuse + loop + sprout", async () => {
  const origin = await makeOrigin("ct@1", [2], 256);
  const state = await makeTmpfsDir(512, "protoctl-att-contract-");
  const driver = new SeedAttachments();
  const exports: NbdExport[] = [];
  const cleanup = async () => {
    await driver.close().catch(() => undefined);
    for (const e of exports) await e.stop().catch(() => undefined);
    await state.cleanup();
    await origin.cleanup();
  };
  try {
    const serve = async (image: string, name: string) => {
      const dir = join(origin.pool.tmpfs, `serve-${exports.length}`);
      await mkdir(dir);
      const e = await serveImage({ image, exportName: name, bindAddress: "127.0.0.1", stateDir: dir });
      exports.push(e);
      return e.uri;
    };
    const bad = join(origin.pool.tmpfs, "corrupt.img");
    // the image's last 4 KiB: outside what the mount reads, inside what the checksum covers
    await corruptCopy(origin.seed.path, bad, origin.seed.sizeBytes - 4096);
    return {
      driver,
      seed: { sizeBytes: origin.seed.sizeBytes, checksum: origin.seed.checksum, subvolume: "ct@1" },
      sources: [await serve(origin.seed.path, "ct@1"), await serve(origin.seed.path, "ct@1")],
      corrupt: await serve(bad, "ct@1"),
      dead: "nbd://127.0.0.1:9/ct%401",
      stateDir: state.path,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
});
