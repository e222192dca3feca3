import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "./errors.js";
import { findExecutable, requireTools, toolFix } from "./tools.js";

let bin: string;

beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), "protoctl-tools-"));
  await writeFile(join(bin, "btrfs"), "#!/bin/sh\n");
  await chmod(join(bin, "btrfs"), 0o755);
  await writeFile(join(bin, "plain"), "not executable");
});

afterAll(async () => {
  await rm(bin, { recursive: true, force: true });
});

describe("tool lookup", () => {
  it("finds executables on the given PATH only, skipping non-executable files and empty entries", async () => {
    expect(await findExecutable("btrfs", `::/nonexistent:${bin}`)).toBe(join(bin, "btrfs"));
    expect(await findExecutable("plain", bin)).toBeUndefined();
    expect(await findExecutable("btrfs", "")).toBeUndefined();
    expect(await findExecutable(join(bin, "btrfs"), "")).toBe(join(bin, "btrfs"));
  });

  it("names every missing tool and the packages that bring them", async () => {
    await requireTools(["btrfs"], bin);
    let err: unknown;
    await requireTools(["btrfs", "nbdkit", "nbdcopy", "nbdinfo"], bin).catch((e) => {
      err = e;
    });
    expect(err).toBeInstanceOf(ProtoctlError);
    const pe = err as ProtoctlError;
    expect(pe.code).toBe(Code.FAILED_PRECONDITION);
    expect(pe.reason).toBe("TOOL_MISSING");
    expect(pe.message).toBe("Required tools missing: 'nbdkit', 'nbdcopy', 'nbdinfo'");
    expect(pe.hint).toBe("apt-get install nbdkit libnbd-bin");
    await expect(requireTools(["mkfs.btrfs"], bin)).rejects.toThrow("Required tool 'mkfs.btrfs' is missing");
    expect(toolFix("qemu-nbd")).toBe("apt-get install qemu-utils");
    expect(toolFix("frobnicate")).toBe("install frobnicate");
  });
});
