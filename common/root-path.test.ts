import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  lstatInRoot,
  openDirInRoot,
  removeFileInRoot,
  rootRelativeParts,
  writeFileInRoot,
} from "./root-path.js";

let top: string;
let root: string;
let outside: string;

beforeEach(async () => {
  top = await mkdtemp(join(tmpdir(), "protoctl-root-path-"));
  root = join(top, "root");
  outside = join(top, "outside");
  await mkdir(join(root, "etc"), { recursive: true });
  await mkdir(join(root, "usr/bin"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(outside, "secret"), "host file\n");
});

afterEach(async () => {
  await rm(top, { recursive: true, force: true });
});

const read = (p: string) => readFile(p, "utf8");

describe("rootRelativeParts", () => {
  it("drops empty and '.' parts and refuses '..' and NUL", () => {
    expect(rootRelativeParts("/etc//./hosts")).toEqual(["etc", "hosts"]);
    expect(() => rootRelativeParts("etc/../../x")).toThrow(/must not hold '\.\.'/);
    expect(() => rootRelativeParts("etc/a\0b")).toThrow(/NUL/);
  });
});

describe("writeFileInRoot", () => {
  it("writes a plain file with the exact mode, making parents", async () => {
    await writeFileInRoot(root, "etc/app/conf.d/x.conf", "hello\n", 0o600);
    const p = join(root, "etc/app/conf.d/x.conf");
    expect(await read(p)).toBe("hello\n");
    expect((await stat(p)).mode & 0o7777).toBe(0o600);
    expect((await stat(join(root, "etc/app"))).mode & 0o7777).toBe(0o755);
  });

  it("replaces a last-component symlink to a host file instead of writing through it", async () => {
    await symlink(join(outside, "secret"), join(root, "etc/hostname"));
    await writeFileInRoot(root, "etc/hostname", "env\n");
    expect(await read(join(outside, "secret"))).toBe("host file\n");
    expect((await lstat(join(root, "etc/hostname"))).isFile()).toBe(true);
    expect(await read(join(root, "etc/hostname"))).toBe("env\n");
  });

  it("resolves an absolute parent symlink inside the root, never on the host", async () => {
    await symlink(outside, join(root, "etc/app"));
    await writeFileInRoot(root, "etc/app/secret", "env\n");
    expect(await read(join(outside, "secret"))).toBe("host file\n");
    // the link's target, taken as a path in the root, was made there
    expect(await read(join(root, outside, "secret"))).toBe("env\n");
  });

  it("clamps relative links that climb out at the root", async () => {
    await symlink("../../../../../../../..", join(root, "etc/up"));
    await writeFileInRoot(root, `etc/up/${join(outside, "secret").slice(1)}`, "env\n");
    expect(await read(join(outside, "secret"))).toBe("host file\n");
    expect(await read(join(root, outside, "secret"))).toBe("env\n");
  });

  it("follows relative links that stay inside (a usrmerge /bin)", async () => {
    await symlink("usr/bin", join(root, "bin"));
    await writeFileInRoot(root, "bin/tool", "#!/bin/sh\n", 0o755);
    expect(await read(join(root, "usr/bin/tool"))).toBe("#!/bin/sh\n");
    expect(await readlink(join(root, "bin"))).toBe("usr/bin");
  });

  it("refuses a symlink loop with FAILED_PRECONDITION", async () => {
    await symlink("b", join(root, "etc/a"));
    await symlink("a", join(root, "etc/b"));
    await expect(writeFileInRoot(root, "etc/a/x", "x")).rejects.toMatchObject({
      code: 9,
      reason: "SYMLINK_LOOP",
    });
  });

  it("refuses a parent that is a file, and a target that is a directory", async () => {
    await writeFile(join(root, "etc/file"), "f");
    await expect(writeFileInRoot(root, "etc/file/x", "x")).rejects.toMatchObject({
      code: 9,
      reason: "PATH_NOT_DIRECTORY",
    });
    await mkdir(join(root, "etc/dir"));
    await expect(writeFileInRoot(root, "etc/dir", "x")).rejects.toMatchObject({ code: 9 });
    // no temp file left behind
    expect((await readdir(join(root, "etc"))).sort()).toEqual(["dir", "file"]);
  });

  it("refuses '..' in the asked path with INVALID_ARGUMENT", async () => {
    await expect(writeFileInRoot(root, "../outside/secret", "x")).rejects.toMatchObject({
      code: 3,
      reason: "INVALID_PATH",
    });
    expect(await read(join(outside, "secret"))).toBe("host file\n");
  });
});

describe("openDirInRoot", () => {
  it("holds the directory: a swap for a symlink after the open changes nothing", async () => {
    await mkdir(join(root, "var/log/journal"), { recursive: true });
    const held = await openDirInRoot(root, "var/log/journal");
    try {
      await rename(join(root, "var/log/journal"), join(root, "var/log/moved"));
      await symlink(outside, join(root, "var/log/journal"));
      // the held path still names the directory the walk checked, wherever it moved, not the host one
      await writeFile(join(held.path, "secret"), "env\n");
      expect(await read(join(root, "var/log/moved/secret"))).toBe("env\n");
      expect(await read(join(outside, "secret"))).toBe("host file\n");
    } finally {
      await held.close();
    }
  });

  it("reports a missing directory as PATH_NOT_FOUND without making it", async () => {
    await expect(openDirInRoot(root, "var/none")).rejects.toMatchObject({ reason: "PATH_NOT_FOUND" });
    await expect(stat(join(root, "var"))).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("lstatInRoot and removeFileInRoot", () => {
  it("act on the link itself, inside the root", async () => {
    await symlink(join(outside, "secret"), join(root, "etc/resolv.conf"));
    expect((await lstatInRoot(root, "etc/resolv.conf"))?.isSymbolicLink()).toBe(true);
    expect(await lstatInRoot(root, "etc/none")).toBeUndefined();
    expect(await lstatInRoot(root, "nodir/none")).toBeUndefined();
    expect(await removeFileInRoot(root, "etc/resolv.conf")).toBe(true);
    expect(await read(join(outside, "secret"))).toBe("host file\n");
    expect(await lstatInRoot(root, "etc/resolv.conf")).toBeUndefined();
  });

  it("never removes through a parent symlink to the host", async () => {
    await symlink(outside, join(root, "etc/out"));
    expect(await removeFileInRoot(root, "etc/out/secret")).toBe(false);
    expect(await read(join(outside, "secret"))).toBe("host file\n");
  });

  it("keeps what the predicate vetoes", async () => {
    await writeFile(join(root, "etc/resolv.conf"), "nameserver 1.1.1.1\n");
    expect(await removeFileInRoot(root, "etc/resolv.conf", (st) => st.size > 0)).toBe(false);
    expect(await read(join(root, "etc/resolv.conf"))).toContain("nameserver");
  });
});
