import { describe, expect, it } from "vitest";
import { parseSendDump, unescapeDumpPath } from "./send-dump.js";

// captured: `btrfs send --no-data -p a b | btrfs receive --dump` (btrfs-progs 6.2), b's subvolume named "b"
const DUMP = `snapshot        ./b                             uuid=f93123fb transid=10 parent_uuid=a49cad70 parent_transid=8
rmdir           ./b/dir
update_extent   ./b/etc/f                       offset=0 len=6
utimes          ./b/etc/f                       atime=2026-12-07T12:56:03+0000 mtime=2026-12-07T12:56:03+0000 ctime=2026-12-07T12:56:03+0000
link            ./b/etc/tab\\tx\\\\                dest=etc/sp\\ ace
unlink          ./b/etc/sp\\ ace
mkfile          ./b/o261-9-0
rename          ./b/o261-9-0                    dest=./b/etc/new
chmod           ./b/etc/new                     mode=644
utimes          ./b/                            atime=2026-12-07T12:56:03+0000 mtime=2026-12-07T12:56:03+0000 ctime=2026-12-07T12:56:03+0000
utimes          ./b/etc                         atime=2026-12-07T12:56:03+0000 mtime=2026-12-07T12:56:03+0000 ctime=2026-12-07T12:56:03+0000
`;

describe("parseSendDump", () => {
  it("lists every changed path, relative to the subvolume, renames and links with both names", () => {
    const r = parseSendDump(DUMP, "b");
    expect(r.unreadable).toBeUndefined();
    expect(r.changes.map((c) => `${c.command} ${c.path}`)).toEqual([
      "rmdir dir",
      "update_extent etc/f",
      "utimes etc/f",
      "link etc/tab\tx\\",
      "link etc/sp ace",
      "unlink etc/sp ace",
      "mkfile o261-9-0",
      "rename o261-9-0",
      "rename etc/new",
      "chmod etc/new",
      "utimes ",
      "utimes etc",
    ]);
  });

  it("refuses dumps it cannot read exactly", () => {
    expect(parseSendDump("", "b").unreadable).toBe("empty dump");
    expect(parseSendDump("mkfile ./b/x\n", "b").unreadable).toMatch(/no stream header/);
    expect(parseSendDump("snapshot ./c uuid=1\n", "b").unreadable).toMatch(/unexpected stream header/);
    expect(parseSendDump("snapshot ./b uuid=1\nmkfile ./c/x\n", "b").unreadable).toMatch(/outside/);
    expect(parseSendDump("snapshot ./b uuid=1\nrename ./b/x dest=./c/y\n", "b").unreadable).toMatch(
      /dest outside/,
    );
    expect(parseSendDump("snapshot ./b uuid=1\nrename ./b/x\n", "b").unreadable).toMatch(
      /without a readable dest/,
    );
    // a name that is not UTF-8 (byte 0xff) cannot be compared exactly
    expect(parseSendDump("snapshot ./b uuid=1\nmkfile ./b/\\377\n", "b").unreadable).toMatch(/undecodable/);
  });
});

describe("unescapeDumpPath", () => {
  it("decodes btrfs-progs' escapes, octal bytes as UTF-8", () => {
    expect(unescapeDumpPath("a\\ b\\\\c\\n")).toBe("a b\\c\n");
    expect(unescapeDumpPath("caf\\303\\251")).toBe("café");
    expect(unescapeDumpPath("x\\q")).toBeUndefined();
    expect(unescapeDumpPath("x\\")).toBeUndefined();
  });
});
