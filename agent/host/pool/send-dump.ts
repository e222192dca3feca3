/**
 * Parses `btrfs receive --dump` of a `btrfs send --no-data -p OLD NEW`
 * stream: which paths of NEW differ from OLD (layer rebases, layer-rebase.ts).
 * Pure, unit-tested on captured output (send-dump.test.ts).
 *
 * Dump lines are `COMMAND  PATH  [key=value ...]`; PATH is `./SUBVOL/rel`
 * (SUBVOL: the sent subvolume's name), escaped by btrfs-progs'
 * print_path_escaped: `\ `, `\\`, `\a\b\e\f\n\r\t\v`, and `\ooo` (octal)
 * for any other non-printable byte. `rename`'s dest has the `./SUBVOL/`
 * prefix, `link`'s dest has none (both measured with btrfs-progs 6.2).
 */

export interface DumpChange {
  command: string;
  /** Root-relative path, "" for the subvolume's root directory. */
  path: string;
}

export interface ParsedDump {
  changes: DumpChange[];
  /** Why the dump cannot be trusted to be read exactly (then: no rebase), or undefined. */
  unreadable?: string;
}

const SIMPLE_ESCAPES: Record<string, number> = {
  a: 0x07,
  b: 0x08,
  e: 0x1b,
  f: 0x0c,
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
  " ": 0x20,
  "\\": 0x5c,
};

/** Splits a dump line into its tokens, still escaped (escaped spaces do not split). */
function tokens(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) {
      cur += c + line[i + 1];
      i++;
    } else if (c === " " || c === "\t") {
      if (cur) out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (cur) out.push(cur);
  return out;
}

/** Decodes one escaped path; undefined when it is not exact UTF-8 text (or a bad escape). */
export function unescapeDumpPath(s: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== "\\") {
      bytes.push(...Buffer.from(c, "utf8"));
      continue;
    }
    const next = s[i + 1];
    if (next === undefined) return undefined;
    const simple = SIMPLE_ESCAPES[next];
    if (simple !== undefined) {
      bytes.push(simple);
      i++;
    } else if (/^[0-3][0-7]{2}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(Number.parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else return undefined;
  }
  const buf = Buffer.from(bytes);
  const text = buf.toString("utf8");
  // a name that is not valid UTF-8 cannot be compared with Node's string paths exactly
  return Buffer.from(text, "utf8").equals(buf) ? text : undefined;
}

/** Strips `./SUBVOL` (and the slash after it); undefined when the path is not under it. */
function underSubvol(path: string, subvol: string): string | undefined {
  const prefix = `./${subvol}`;
  if (path === prefix || path === `${prefix}/`) return "";
  if (!path.startsWith(`${prefix}/`)) return undefined;
  return path.slice(prefix.length + 1).replace(/\/+$/, "");
}

/**
 * The changes a dump lists, in order. `subvol` is the name the stream gives
 * the new subvolume (its directory's basename). Any line that does not parse
 * makes the whole dump unreadable: callers then build from scratch.
 */
export function parseSendDump(text: string, subvol: string): ParsedDump {
  const changes: DumpChange[] = [];
  const fail = (why: string, line: string): ParsedDump => ({
    changes,
    unreadable: `${why}: ${JSON.stringify(line.slice(0, 200))}`,
  });
  let sawHeader = false;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const [command, rawPath, ...rest] = tokens(line);
    if (!command || rawPath === undefined) return fail("short line", line);
    const decoded = unescapeDumpPath(rawPath);
    if (decoded === undefined) return fail("undecodable path", line);
    if (command === "snapshot" || command === "subvol") {
      if (sawHeader || decoded !== `./${subvol}`) return fail("unexpected stream header", line);
      sawHeader = true;
      continue;
    }
    if (!sawHeader) return fail("no stream header", line);
    const path = underSubvol(decoded, subvol);
    if (path === undefined) return fail("path outside the subvolume", line);
    changes.push({ command, path });
    if (command === "rename" || command === "link") {
      const destRaw = rest.find((t) => t.startsWith("dest="))?.slice(5);
      const dest = destRaw === undefined ? undefined : unescapeDumpPath(destRaw);
      if (dest === undefined) return fail(`${command} without a readable dest`, line);
      const destPath = command === "rename" ? underSubvol(dest, subvol) : dest.replace(/\/+$/, "");
      if (destPath === undefined) return fail("dest outside the subvolume", line);
      changes.push({ command, path: destPath });
    }
  }
  if (!sawHeader) return { changes, unreadable: "empty dump" };
  return { changes };
}
