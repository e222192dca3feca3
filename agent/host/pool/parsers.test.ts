import { describe, expect, it } from "vitest";
import { parseBaseDirName, parseLayerBuildDirName } from "./layout.js";
import {
  parseAptMirror,
  parseFilesystemDu,
  parseFilesystemUsage,
  parseLosetupAssociations,
  parseMountinfo,
  parseQgroupShow,
  tarCompressionFlag,
} from "./parsers.js";

// Captured on this host (btrfs-progs 6.2, util-linux 2.38.1, kernel 6.18).
const USAGE = `Overall:
    Device size:\t\t         209715200
    Device allocated:\t\t          92274688
    Device unallocated:\t\t         117440512
    Device missing:\t\t                 0
    Device slack:\t\t                 0
    Used:\t\t\t            294912
    Free (estimated):\t\t         125829120\t(min: 67108864)
    Free (statfs, df):\t\t         124780544
    Data ratio:\t\t\t              1.00
    Metadata ratio:\t\t              2.00
    Global reserve:\t\t           5767168\t(used: 0)
    Multiple profiles:\t\t                no

Data,single: Size:8388608, Used:0 (0.00%)
   /dev/loop0\t   8388608
`;

const DU = `     Total   Exclusive  Set shared  Filename
   5242880           0     5242880  /tmp/xm/a
   5242880        4096     5238784  /tmp/xm/b c
      4096        4096           -  /tmp/xm/empty
`;

const MOUNTINFO = `26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
44 27 0:40 / /tmp/xm rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,subvolid=5,subvol=/
45 44 0:41 / /tmp/xm/@env/a\\040b/root rw,relatime - overlay overlay rw,lowerdir=/x:/y,upperdir=/u,workdir=/w
garbage line
`;

describe("parsers of tool output", () => {
  it("reads btrfs filesystem usage -b", () => {
    expect(parseFilesystemUsage(USAGE)).toEqual({
      deviceSize: 209715200,
      used: 294912,
      freeEstimated: 125829120,
    });
    expect(() => parseFilesystemUsage("nonsense")).toThrow(/Device size/);
  });

  it("reads btrfs filesystem du -s --raw, paths with spaces and '-' shared", () => {
    expect(parseFilesystemDu(DU)).toEqual([
      { path: "/tmp/xm/a", totalBytes: 5242880, exclusiveBytes: 0, sharedBytes: 5242880 },
      { path: "/tmp/xm/b c", totalBytes: 5242880, exclusiveBytes: 4096, sharedBytes: 5238784 },
      { path: "/tmp/xm/empty", totalBytes: 4096, exclusiveBytes: 4096, sharedBytes: 0 },
    ]);
  });

  it("reads losetup -j", () => {
    expect(parseLosetupAssociations("/dev/loop0: [65024]:2147300 (/tmp/x.img)\n")).toEqual([
      { device: "/dev/loop0", backingFile: "/tmp/x.img" },
    ]);
    expect(parseLosetupAssociations("/dev/loop12: [0047]:5 (/a b/pool.img), offset 0\n")[0]?.device).toBe(
      "/dev/loop12",
    );
    expect(parseLosetupAssociations("")).toEqual([]);
  });

  it("reads mountinfo with octal escapes", () => {
    const m = parseMountinfo(MOUNTINFO);
    expect(m).toHaveLength(3);
    expect(m[1]).toMatchObject({ mountpoint: "/tmp/xm", fstype: "btrfs", source: "/dev/loop0", root: "/" });
    expect(m[2]).toMatchObject({ mountpoint: "/tmp/xm/@env/a b/root", fstype: "overlay", parentId: 44 });
  });

  it("tells the tar compression from magic bytes", () => {
    expect(tarCompressionFlag(Uint8Array.from([0x1f, 0x8b, 8, 0]))).toBe("--gzip");
    expect(tarCompressionFlag(Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe("--zstd");
    expect(tarCompressionFlag(Uint8Array.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0]))).toBe("--xz");
    expect(tarCompressionFlag(Buffer.from("BZh91AY"))).toBe("--bzip2");
    expect(tarCompressionFlag(Buffer.from("./\0\0\0\0\0\0"))).toBeUndefined();
  });

  it("finds apt's mirror in deb822 and one-line sources", () => {
    const deb822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
`;
    expect(parseAptMirror(deb822)).toBe("http://deb.debian.org/debian");
    expect(parseAptMirror("deb http://security.debian.org/ bookworm-security main\n")).toBeUndefined();
    expect(
      parseAptMirror("# deb http://x/ a\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n"),
    ).toBe("http://mirror.example/debian");
  });

  it("parses object directory names and nothing else", () => {
    expect(parseBaseDirName("debian@12")).toEqual({ name: "debian", version: 12 });
    expect(parseBaseDirName(".tmp-abc")).toBeUndefined();
    expect(parseBaseDirName("debian@0")).toBeUndefined();
    expect(parseBaseDirName("debian.last")).toBeUndefined();
    expect(parseLayerBuildDirName("deb@3.0123456789abcdef")).toEqual({
      base: "deb",
      version: 3,
      digest16: "0123456789abcdef",
    });
    expect(parseLayerBuildDirName("recipe.json")).toBeUndefined();
  });
});

describe("parseQgroupShow", () => {
  it("reads ids, bytes and limits from `btrfs qgroup show -re --raw` (progs 6.2)", () => {
    const text = [
      "Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path ",
      "--------    ----------    ---------  --------------  -------------   ---- ",
      "0/5              16384        16384            none           none   <toplevel>",
      "0/257         16744448     16744448        16777216           none   env",
    ].join("\n");
    const m = parseQgroupShow(text);
    expect(m.get("0/5")).toEqual({ referenced: 16384, exclusive: 16384, maxReferenced: 0 });
    expect(m.get("0/257")).toEqual({ referenced: 16744448, exclusive: 16744448, maxReferenced: 16777216 });
    expect(m.size).toBe(2);
  });
});
