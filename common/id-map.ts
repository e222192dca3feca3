/**
 * A user namespace's uid or gid map (`/proc/PID/uid_map`, `gid_map`): lines
 * of "inside outside count". `env cp` into a running env works through
 * /proc/LEADER/root, where ids are the host's (kernel) ids: an entry's
 * in-env owner goes out through `toHost`, and what it reads comes back
 * through `fromHost`. Pure, unit tested.
 */

export interface IdRange {
  inside: number;
  outside: number;
  count: number;
}

export class IdMap {
  constructor(readonly ranges: readonly IdRange[]) {}

  /** Parses the text of a uid_map or gid_map file; a malformed line is an error. */
  static parse(text: string): IdMap {
    const ranges: IdRange[] = [];
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line);
      if (!m) throw new Error(`bad id map line ${JSON.stringify(line)}`);
      ranges.push({ inside: Number(m[1]), outside: Number(m[2]), count: Number(m[3]) });
    }
    return new IdMap(ranges);
  }

  /** The whole 32-bit range onto itself: the initial namespace (a privileged env). */
  get identity(): boolean {
    const r = this.ranges[0];
    return this.ranges.length === 1 && r?.inside === 0 && r.outside === 0 && r.count >= 0xffffffff;
  }

  /** The host id of in-namespace id `id`; undefined when unmapped. */
  toHost(id: number): number | undefined {
    for (const r of this.ranges)
      if (id >= r.inside && id < r.inside + r.count) return r.outside + id - r.inside;
    return undefined;
  }

  /** The in-namespace id of host id `id`; undefined when unmapped (the kernel shows the overflow id). */
  fromHost(id: number): number | undefined {
    for (const r of this.ranges)
      if (id >= r.outside && id < r.outside + r.count) return r.inside + id - r.outside;
    return undefined;
  }
}

/** The kernel's overflow id, what an unmapped owner shows as inside a namespace. */
export const OVERFLOW_ID = 65534;
