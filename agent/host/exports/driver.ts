/** The real ExportDriver: seed images with btrfs-progs, exports with qemu-nbd. */
import { serveImage } from "./nbd-server.js";
import { publishSeedImage } from "./seed-image.js";
import type { ExportDriver } from "./types.js";

export const qemuNbdExports: ExportDriver = {
  publish: publishSeedImage,
  serve: serveImage,
};
