/**
 * ExportDriver in memory: `publish` writes a small sealed file standing for
 * the seed image (checksummed as real images are), `serve` validates as the
 * NBD server does and hands out an export that only records its state
 * (test/contracts/export-contract.ts holds both to the same behaviour).
 */
import { randomInt, randomUUID } from "node:crypto";
import { chmod, mkdir, stat, writeFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { newHasher } from "../../agent/host/exports/checksum.js";
import { formatNbdUri, validateExportName } from "../../agent/host/exports/nbd-uri.js";
import type {
  ExportDriver,
  NbdExport,
  PublishOptions,
  SeedImage,
  ServeOptions,
} from "../../agent/host/exports/types.js";
import { invalidArgument, notFound } from "../../common/errors.js";

export class FakeExports implements ExportDriver {
  /** Exports still running. */
  readonly serving = new Set<NbdExport>();

  async publish(subvolume: string, imagePath: string, opts: PublishOptions = {}): Promise<SeedImage> {
    if (!(await stat(subvolume).catch(() => undefined))?.isDirectory()) {
      throw notFound(`subvolume ${subvolume} not found`);
    }
    const bytes = Buffer.from(`fake seed of ${basename(subvolume)}\n`);
    await mkdir(dirname(imagePath), { recursive: true });
    await writeFile(imagePath, bytes);
    await chmod(imagePath, 0o444);
    for (const step of ["measure", "format", "send", "seal", "checksum"]) opts.progress?.({ step });
    const h = newHasher();
    h.update(bytes);
    return {
      path: imagePath,
      sizeBytes: bytes.length,
      checksum: h.digest(),
      subvolume: basename(subvolume),
      fsid: randomUUID(),
    };
  }

  async serve(o: ServeOptions): Promise<NbdExport> {
    validateExportName(o.exportName);
    if (!o.bindAddress || o.bindAddress === "0.0.0.0" || o.bindAddress === "::") {
      throw invalidArgument("an NBD export binds to one address, not a wildcard", {
        reason: "BAD_BIND_ADDRESS",
      });
    }
    if ((o.allow?.length ?? 0) > 0 && !o.tls) {
      throw invalidArgument("a client allow-list needs TLS (client certificate DNs)", {
        reason: "ALLOW_NEEDS_TLS",
      });
    }
    if (!(await stat(o.image).catch(() => undefined))?.isFile()) throw notFound(`image ${o.image} not found`);
    const port = o.port || randomInt(20_000, 60_000);
    let running = true;
    let done: () => void = () => undefined;
    const exited = new Promise<void>((res) => {
      done = res;
    });
    const serving = this.serving;
    const exp: NbdExport = {
      uri: formatNbdUri({ tls: !!o.tls, host: o.bindAddress, port, exportName: o.exportName }),
      bindAddress: o.bindAddress,
      port,
      exportName: o.exportName,
      image: o.image,
      pid: 1,
      tls: !!o.tls,
      get running() {
        return running;
      },
      exited,
      async stop() {
        running = false;
        serving.delete(exp);
        done();
      },
    };
    serving.add(exp);
    return exp;
  }
}
