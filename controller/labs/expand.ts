/**
 * Machine name expansion. A machine entry stands for one machine (`db`), for
 * `count` numbered machines (`web` + count 3 → web-1, web-2, web-3), or for a
 * bash-style range written in the name (`web-{1..3}`, `node{01..10}` keeps the
 * zero padding). Counting starts at 1 so that scaling 1 → 3 keeps `web-1`.
 */

/** Upper bound on machines one entry may expand to: a lab is "a few to dozens". */
export const MAX_EXPANSION = 512;

export interface ExpandedName {
  name: string;
  /** 1-based position in the expansion; 0 for a plain name without count. */
  index: number;
}

export type ExpandResult = { ok: true; names: ExpandedName[] } | { ok: false; error: string };

const RANGE = /\{(\d+)\.\.(\d+)\}/;

/** True when the template contains a `{A..B}` range. */
export function hasRange(template: string): boolean {
  return RANGE.test(template);
}

/**
 * Expands a machine template. `count` undefined means "not counted". Names are
 * not validated here (the caller checks each against the name rule, with the
 * template's position for the error).
 */
export function expandMachineName(template: string, count?: number): ExpandResult {
  const m = RANGE.exec(template);
  if (m) {
    if (count !== undefined) {
      return { ok: false, error: `machine '${template}' has both a name range and a count; use one of them` };
    }
    const before = template.slice(0, m.index);
    const after = template.slice(m.index + m[0].length);
    if (/[{}]/.test(before) || /[{}]/.test(after)) {
      return { ok: false, error: `machine '${template}' may hold only one {A..B} range` };
    }
    const [a, b] = [m[1]!, m[2]!];
    const from = Number(a);
    const to = Number(b);
    if (from > to)
      return { ok: false, error: `range {${a}..${b}} in '${template}' counts down; write {${b}..${a}}` };
    if (to - from + 1 > MAX_EXPANSION) {
      return {
        ok: false,
        error: `range {${a}..${b}} in '${template}' gives more than ${MAX_EXPANSION} machines`,
      };
    }
    // Like bash: a leading zero on either bound pads every number to the longer width.
    const padded = (a.length > 1 && a.startsWith("0")) || (b.length > 1 && b.startsWith("0"));
    const width = padded ? Math.max(a.length, b.length) : 0;
    const names: ExpandedName[] = [];
    for (let n = from; n <= to; n++) {
      names.push({ name: `${before}${String(n).padStart(width, "0")}${after}`, index: n - from + 1 });
    }
    return { ok: true, names };
  }
  if (/[{}]/.test(template)) {
    return { ok: false, error: `machine '${template}' has braces but no {A..B} range (e.g. web-{1..3})` };
  }
  if (count === undefined) return { ok: true, names: [{ name: template, index: 0 }] };
  if (!Number.isInteger(count) || count < 1 || count > MAX_EXPANSION) {
    return { ok: false, error: `count must be a whole number from 1 to ${MAX_EXPANSION}` };
  }
  const names: ExpandedName[] = [];
  for (let i = 1; i <= count; i++) names.push({ name: `${template}-${i}`, index: i });
  return { ok: true, names };
}
