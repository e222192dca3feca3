/**
 * When may a layer's build on base@N be carried onto base@M (layer-rebase.ts)?
 * Pure: the base's changed paths against what the old upper holds there.
 *
 * The upper hides or overrides everything it holds, so a rebase is exact
 * only when no change of the base is hidden by it:
 *  - a changed path the upper also holds (file, dir, whiteout) conflicts: the
 *    upper would keep the old build's version (for a directory: its old
 *    mode/owner/xattrs; a directory's times alone are ignored by the caller);
 *  - a changed path below a whiteout, a non-directory or an opaque (or
 *    redirected) directory of the upper conflicts: the upper hides it;
 *  - a hard-linked file changed conflicts: the dump names one of its paths
 *    only, the upper may hold another.
 * Anything else lies where the upper has nothing or a plain directory that
 * merges, so the merged tree over base@M is what a build would have given
 * before the recipe runs again.
 */

/** What the old upper holds at a path. */
export type UpperKind = "dir" | "opaque-dir" | "whiteout" | "other";

export interface BaseChange {
  /** Root-relative, "" for the root directory. */
  path: string;
  /** A file with more than one link (in either base version). */
  hardLinked?: boolean;
}

/** The first conflict, as a sentence for the build's log; undefined when none. */
export function rebaseConflict(
  changes: readonly BaseChange[],
  upper: ReadonlyMap<string, UpperKind>,
): string | undefined {
  for (const c of changes) {
    const shown = `/${c.path}`;
    if (c.hardLinked) return `${shown} is a hard-linked file the base changed`;
    const parts = c.path ? c.path.split("/") : [];
    // the upper's root always exists; it hides everything when opaque
    const ancestors = ["", ...parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("/"))];
    let hidden = false;
    for (const a of c.path ? ancestors : []) {
      const kind = upper.get(a);
      if (kind === undefined) {
        hidden = true; // nothing of the upper at or below here
        break;
      }
      if (kind !== "dir") return `${shown} changed in the base under ${kind} /${a} of the layer`;
    }
    if (hidden) continue;
    const own = upper.get(c.path);
    if (own !== undefined) return `${shown} changed in the base and the layer holds it (${own})`;
  }
  return undefined;
}

/** The paths `rebaseConflict` looks up for these changes: each path and its ancestors. */
export function pathsToDescribe(changes: readonly BaseChange[]): string[] {
  const out = new Set<string>([""]);
  for (const c of changes) {
    const parts = c.path ? c.path.split("/") : [];
    for (let i = 1; i <= parts.length; i++) out.add(parts.slice(0, i).join("/"));
  }
  return [...out].sort((a, b) => a.split("/").length - b.split("/").length || a.localeCompare(b));
}
