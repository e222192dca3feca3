/**
 * What every AttachmentDriver must do, run against the real one (nbdfuse,
 * loop devices, a btrfs sprout: attachment-contract.int.test.ts) and the
 * in-memory fake (test/unit/fakes/fake-attachments.test.ts).
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AttachmentDriver, AttachOptions, SeedInfo } from "../../agent/host/attachments/types.js";
import { Code } from "../../common/errors.js";
import { expectCode } from "./expect-code.js";

const MiB = 1024 * 1024;

export interface AttachmentBed {
  driver: AttachmentDriver;
  /** The seed every source below serves; its subvolume holds etc/motd = "base <subvolume>\n". */
  seed: SeedInfo;
  /** Two sources serving the seed's exact bytes. */
  sources: [string, string];
  /** A source of the same size whose bytes do not match the seed's checksum. */
  corrupt: string;
  /** A URI nothing answers on. */
  dead: string;
  /** An empty directory for attachments (a tmpfs for the real driver). */
  stateDir: string;
  cleanup(): Promise<void>;
}

export function attachmentContract(kind: string, make: () => Promise<AttachmentBed>): void {
  describe(`AttachmentDriver contract: ${kind}`, () => {
    let bed: AttachmentBed;
    beforeAll(async () => {
      bed = await make();
    });
    afterAll(async () => {
      await bed?.cleanup();
    });
    afterEach(async () => {
      for (const a of bed.driver.list()) await bed.driver.detach(a.key);
    });

    const opts = (key: string, uri: string, seed: Partial<SeedInfo> = {}): AttachOptions => ({
      key,
      uri,
      seed: { ...bed.seed, ...seed },
      stateDir: bed.stateDir,
      sproutBytes: 128 * MiB,
    });

    it("attaches lazily (the subvolume is readable), again idempotently, and detaches leaving nothing", async () => {
      const a = await bed.driver.attach(opts("ct@1", bed.sources[0]));
      expect(a).toMatchObject({ key: "ct@1", phase: "attached", uri: bed.sources[0], hydratedBytes: 0 });
      expect(a.sizeBytes).toBe(bed.seed.sizeBytes);
      expect(a.subvolumePath).toBe(join(a.mountpoint, bed.seed.subvolume));
      expect(await readFile(join(a.subvolumePath, "etc/motd"), "utf8")).toBe(`base ${bed.seed.subvolume}\n`);
      const again = await bed.driver.attach(opts("ct@1", bed.sources[0]));
      expect(again.seedLoop).toBe(a.seedLoop);
      expect(bed.driver.get("ct@1")).toMatchObject({ phase: "attached" });
      expect(bed.driver.list().map((s) => s.key)).toEqual(["ct@1"]);

      await bed.driver.detach("ct@1");
      expect(bed.driver.get("ct@1")).toBeUndefined();
      expect(bed.driver.list()).toEqual([]);
      expect(await readdir(bed.stateDir)).not.toContain("ct@1");
      await bed.driver.detach("ct@1");
    });

    it("refuses a bad key, a second source for an attached key, and no room for the sprout", async () => {
      await expectCode(
        () => bed.driver.attach(opts("../x", bed.sources[0])),
        Code.INVALID_ARGUMENT,
        "BAD_KEY",
      );
      await expectCode(
        () => bed.driver.attach({ ...opts("ct@1", bed.sources[0]), sproutBytes: 0 }),
        Code.INVALID_ARGUMENT,
      );
      await bed.driver.attach(opts("ct@1", bed.sources[0]));
      await expectCode(
        () => bed.driver.attach(opts("ct@1", bed.sources[1])),
        Code.ALREADY_EXISTS,
        "ALREADY_ATTACHED",
      );
      await expectCode(
        () => bed.driver.attach({ ...opts("ct@2", bed.sources[0]), sproutBytes: 1024 * 1024 * MiB }),
        Code.RESOURCE_EXHAUSTED,
        "NO_ROOM",
      );
      expect(await readdir(bed.stateDir)).not.toContain("ct@2");
    });

    it("fails with nothing left when the source is dead or serves another subvolume", async () => {
      await expectCode(() => bed.driver.attach(opts("ct@1", bed.dead)), Code.UNAVAILABLE);
      await expectCode(
        () => bed.driver.attach(opts("ct@1", bed.sources[0], { subvolume: "other@1" })),
        Code.FAILED_PRECONDITION,
        "SEED_CONTENT_MISMATCH",
      );
      expect(bed.driver.get("ct@1")).toBeUndefined();
      expect(await readdir(bed.stateDir)).toEqual([]);
    });

    it("hydrates to a local copy: progress up to the size, no source needed after", async () => {
      await bed.driver.attach(opts("ct@1", bed.sources[0]));
      const seen: number[] = [];
      const h = await bed.driver.hydrate("ct@1", { progress: (done) => seen.push(done) });
      expect(h).toMatchObject({
        phase: "local",
        transport: "local",
        uri: "",
        hydratedBytes: bed.seed.sizeBytes,
      });
      expect(h.seedBacking.startsWith(`${bed.stateDir}/`)).toBe(true);
      expect(seen.at(-1)).toBe(bed.seed.sizeBytes);
      expect((await bed.driver.hydrate("ct@1")).phase).toBe("local");
      // local: another source changes nothing
      expect((await bed.driver.switchSource("ct@1", bed.sources[1])).phase).toBe("local");
      expect(await readFile(join(h.subvolumePath, "etc/motd"), "utf8")).toBe(`base ${bed.seed.subvolume}\n`);
    });

    it("rejects a corrupt copy by checksum and stays on NBD; another source then hydrates", async () => {
      await bed.driver.attach(opts("ct@1", bed.corrupt));
      await expectCode(() => bed.driver.hydrate("ct@1"), Code.DATA_LOSS, "CHECKSUM_MISMATCH");
      const after = bed.driver.get("ct@1")!;
      expect(after).toMatchObject({ phase: "attached", uri: bed.corrupt, hydratedBytes: 0 });
      expect(after.message).toMatch(/checksum/);
      const sw = await bed.driver.switchSource("ct@1", bed.sources[1]);
      expect(sw).toMatchObject({ phase: "attached", uri: bed.sources[1], message: "" });
      expect((await bed.driver.hydrate("ct@1")).phase).toBe("local");
    });

    it("says NOT_FOUND for a key never attached; a switch to a dead source keeps the old one", async () => {
      await expectCode(() => bed.driver.hydrate("nope@1"), Code.NOT_FOUND, "ATTACHMENT_NOT_FOUND");
      await expectCode(() => bed.driver.switchSource("nope@1", bed.sources[0]), Code.NOT_FOUND);
      await bed.driver.attach(opts("ct@1", bed.sources[0]));
      await expectCode(() => bed.driver.switchSource("ct@1", bed.dead), Code.UNAVAILABLE);
      expect(bed.driver.get("ct@1")).toMatchObject({ phase: "attached", uri: bed.sources[0] });
      expect((await bed.driver.hydrate("ct@1")).phase).toBe("local");
    });
  });
}
