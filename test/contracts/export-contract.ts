/**
 * What every ExportDriver must do, run against the real one (seed images
 * with btrfs, nbdkit: export-contract.int.test.ts) and the in-memory fake
 * (test/unit/fakes/fake-exports.test.ts).
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checksumAlgo, newHasher } from "../../agent/host/exports/checksum.js";
import type { ExportDriver, SeedImage } from "../../agent/host/exports/types.js";
import { Code } from "../../common/errors.js";
import { expectCode } from "./expect-code.js";

export interface ExportBed {
  driver: ExportDriver;
  /** A read-only subvolume named `name` (a base version's tree) to publish. */
  subvolume(name: string): Promise<string>;
  /** A writable scratch directory for images and server state. */
  scratch: string;
  cleanup(): Promise<void>;
}

export function exportContract(kind: string, make: () => Promise<ExportBed>): void {
  describe(`ExportDriver contract: ${kind}`, () => {
    let bed: ExportBed;
    let seed: SeedImage;
    beforeAll(async () => {
      bed = await make();
    });
    afterAll(async () => {
      await bed?.cleanup();
    });

    it("publishes a subvolume as a sealed, read-only image whose checksum covers every byte", async () => {
      const steps: string[] = [];
      const sub = await bed.subvolume("ct@1");
      seed = await bed.driver.publish(sub, join(bed.scratch, "seeds/ct@1.img"), {
        progress: (p) => steps.push(p.step),
      });
      expect(seed).toMatchObject({ path: join(bed.scratch, "seeds/ct@1.img"), subvolume: "ct@1" });
      expect(seed.fsid).toMatch(/^[0-9a-f-]{36}$/);
      const st = await stat(seed.path);
      expect(st.size).toBe(seed.sizeBytes);
      expect(st.mode & 0o777).toBe(0o444);
      const h = newHasher(checksumAlgo(seed.checksum));
      h.update(await readFile(seed.path));
      expect(h.digest()).toBe(seed.checksum);
      expect(steps).toEqual(expect.arrayContaining(["format", "seal", "checksum"]));
    });

    it("serves an image on one address until stopped (stop is idempotent)", async () => {
      const exp = await bed.driver.serve({
        image: seed.path,
        exportName: "ct@1",
        bindAddress: "127.0.0.1",
        stateDir: join(bed.scratch, "serve"),
      });
      expect(exp).toMatchObject({
        bindAddress: "127.0.0.1",
        exportName: "ct@1",
        image: seed.path,
        tls: false,
      });
      expect(exp.port).toBeGreaterThan(0);
      expect(exp.uri).toBe(`nbd://127.0.0.1:${exp.port}/ct%401`);
      expect(exp.running).toBe(true);
      await exp.stop();
      await exp.exited;
      expect(exp.running).toBe(false);
      await exp.stop();
    });

    it("refuses a wildcard address, an allow-list without TLS and a bad export name", async () => {
      const o = { image: seed.path, exportName: "ct@1", bindAddress: "127.0.0.1", stateDir: bed.scratch };
      await expectCode(
        bed.driver.serve({ ...o, bindAddress: "0.0.0.0" }),
        Code.INVALID_ARGUMENT,
        "BAD_BIND_ADDRESS",
      );
      await expectCode(
        bed.driver.serve({ ...o, bindAddress: "" }),
        Code.INVALID_ARGUMENT,
        "BAD_BIND_ADDRESS",
      );
      await expectCode(
        bed.driver.serve({ ...o, allow: ["CN=node-2"] }),
        Code.INVALID_ARGUMENT,
        "ALLOW_NEEDS_TLS",
      );
      await expectCode(
        bed.driver.serve({ ...o, exportName: "../x" }),
        Code.INVALID_ARGUMENT,
        "BAD_EXPORT_NAME",
      );
    });
  });
}
