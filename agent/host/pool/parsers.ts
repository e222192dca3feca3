/**
 * Pure parsers of what the system tools print (losetup, btrfs, mountinfo,
 * apt sources). Kept apart from the code that runs the tools so they can be
 * unit-tested on captured output.
 */

export interface MountEntry {
  mountId: number;
  parentId: number;
  /** Path of the mount point (octal escapes decoded). */
  mountpoint: string;
  /** Root of the mount inside its filesystem. */
  root: string;
  fstype: string;
  source: string;
  options: string;
  superOptions: string;
}

/** Decodes the \040-style octal escapes mountinfo uses for space, tab, newline and backslash. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Parses /proc/self/mountinfo (see proc(5)). Lines that do not parse are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    if (left.length < 6 || right.length < 2) continue;
    out.push({
      mountId: Number(left[0]),
      parentId: Number(left[1]),
      root: unescapeMountField(left[3] ?? ""),
      mountpoint: unescapeMountField(left[4] ?? ""),
      options: left[5] ?? "",
      fstype: right[0] ?? "",
      source: unescapeMountField(right[1] ?? ""),
      superOptions: right[2] ?? "",
    });
  }
  return out;
}

/**
 * Parses `losetup -j FILE` ("/dev/loop0: [65024]:2147300 (/tmp/x.img)") into
 * the loop devices attached to that file.
 */
export function parseLosetupAssociations(text: string): Array<{ device: string; backingFile: string }> {
  const out: Array<{ device: string; backingFile: string }> = [];
  for (const line of text.split("\n")) {
    const m = /^(\/dev\/loop\d+):\s+\S+\s+\((.*)\)(?:,.*)?\s*$/.exec(line.trim());
    if (m) out.push({ device: m[1]!, backingFile: m[2]! });
  }
  return out;
}

export interface FilesystemUsage {
  deviceSize: number;
  used: number;
  /** "Free (estimated)": what new data can still take. */
  freeEstimated: number;
}

/** Parses `btrfs filesystem usage -b MOUNT` (the "Overall:" block). Throws when a field is missing. */
export function parseFilesystemUsage(text: string): FilesystemUsage {
  const field = (label: string): number => {
    const re = new RegExp(`^\\s*${label.replace(/[()]/g, "\\$&")}:\\s+(-?\\d+)`, "m");
    const m = re.exec(text);
    if (!m) throw new Error(`btrfs filesystem usage: no "${label}" in output`);
    return Number(m[1]);
  };
  return { deviceSize: field("Device size"), used: field("Used"), freeEstimated: field("Free (estimated)") };
}

export interface DuEntry {
  path: string;
  totalBytes: number;
  exclusiveBytes: number;
  sharedBytes: number;
}

/**
 * Parses `btrfs filesystem du -s --raw PATH...`:
 *      Total   Exclusive  Set shared  Filename
 *    5242880           0     5242880  /mnt/a
 * "Set shared" may be "-" when nothing is shared.
 */
export function parseFilesystemDu(text: string): DuEntry[] {
  const out: DuEntry[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+|-)\s+(.+?)\s*$/.exec(line);
    if (!m) continue;
    out.push({
      totalBytes: Number(m[1]),
      exclusiveBytes: Number(m[2]),
      sharedBytes: m[3] === "-" ? 0 : Number(m[3]),
      path: m[4]!,
    });
  }
  return out;
}

/** The tar flag that decompresses an archive, from its first bytes (magic numbers, not file names). */
export function tarCompressionFlag(head: Uint8Array): string | undefined {
  const starts = (...bytes: number[]) => bytes.every((b, i) => head[i] === b);
  if (starts(0x1f, 0x8b)) return "--gzip";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "--zstd";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "--xz";
  if (starts(0x42, 0x5a, 0x68)) return "--bzip2";
  return undefined;
}

/**
 * The first Debian mirror named by apt's configuration: deb822 `.sources`
 * files ("URIs: http://deb.debian.org/debian") or one-line sources.list
 * ("deb [opts] http://deb.debian.org/debian bookworm main"). Security and
 * updates archives are skipped: debootstrap wants the main archive.
 */
export function parseAptMirror(text: string): string | undefined {
  const candidates: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#")) continue;
    const deb822 = /^URIs:\s*(.+)$/i.exec(line);
    if (deb822) candidates.push(...deb822[1]!.split(/\s+/));
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (oneLine && !/-security|-updates|-backports/.test(oneLine[2]!)) candidates.push(oneLine[1]!);
  }
  return candidates.find((u) => /^https?:\/\//.test(u) && !/security/.test(u));
}

/** One qgroup's bytes from `btrfs qgroup show -re --raw` (limit 0: none). */
export interface QgroupUsage {
  referenced: number;
  exclusive: number;
  maxReferenced: number;
}

/** Parses `btrfs qgroup show -re --raw` (progs 6.x columns: id, rfer, excl, max_rfer, max_excl[, path]). */
export function parseQgroupShow(text: string): Map<string, QgroupUsage> {
  const out = new Map<string, QgroupUsage>();
  for (const line of text.split("\n")) {
    const m = /^\s*([0-9]+\/[0-9]+)\s+([0-9]+)\s+([0-9]+)\s+(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const num = (s: string) => (/^[0-9]+$/.test(s) ? Number(s) : 0);
    out.set(m[1]!, { referenced: Number(m[2]), exclusive: Number(m[3]), maxReferenced: num(m[4]!) });
  }
  return out;
}
