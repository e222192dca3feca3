/**
 * Decides whether a layer build on base@M may start from the same recipe's
 * build on an earlier version base@N (layers.ts runs the recipe again on it):
 * the base's changes N→M from `btrfs send --no-data -p` (exact, from the
 * filesystem's own trees), the old upper looked up at those paths, and the
 * rule in rebase-rule.ts. Both trees are this pool's read-only subvolumes,
 * but the dump's paths are still treated as untrusted text: decoded exactly
 * or refused, looked up with root-path.ts (never outside the upper, the last
 * component never followed).
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { basename } from "node:path";
import { run } from "../../../common/exec.js";
import { lstatInRoot, rootRelativeParts } from "../../../common/root-path.js";
import { type BaseChange, pathsToDescribe, rebaseConflict, type UpperKind } from "./rebase-rule.js";
import { parseSendDump } from "./send-dump.js";

export type RebaseDecision = { rebase: true } | { rebase: false; why: string };

/**
 * The changes from `oldRoot` to `newRoot` (read-only subvolumes of one
 * btrfs), pure directory `utimes` left out. `scratch`: a path for the
 * stream file (removed here). A string when the diff cannot be read exactly.
 */
export async function baseChanges(
  oldRoot: string,
  newRoot: string,
  scratch: string,
): Promise<BaseChange[] | string> {
  try {
    // a file between the two commands instead of a pipe: exec.ts runs one process at a time
    await run("btrfs", ["send", "-q", "--no-data", "-p", oldRoot, "-f", scratch, newRoot]);
    const dump = await run("btrfs", ["receive", "--dump", "-f", scratch]);
    const parsed = parseSendDump(dump.stdout, basename(newRoot));
    if (parsed.unreadable) return `base diff unreadable (${parsed.unreadable})`;
    const out: BaseChange[] = [];
    const seen = new Set<string>();
    for (const c of parsed.changes) {
      if (seen.has(c.path)) continue;
      try {
        rootRelativeParts(c.path);
      } catch {
        return `base diff names an invalid path ${JSON.stringify(c.path)}`;
      }
      const now = c.path ? await lstatInRoot(newRoot, c.path).catch(() => undefined) : undefined;
      if (c.command === "utimes" && (c.path === "" || now?.isDirectory())) continue;
      seen.add(c.path);
      const before = c.path ? await lstatInRoot(oldRoot, c.path).catch(() => undefined) : undefined;
      const hardLinked = [now, before].some((s) => s?.isFile() && s.nlink > 1);
      out.push(hardLinked ? { path: c.path, hardLinked } : { path: c.path });
    }
    return out;
  } catch (err) {
    return `base diff failed: ${(err as Error).message.split("\n")[0]}`;
  } finally {
    await rm(scratch, { force: true });
  }
}

/**
 * What the upper holds at the paths the rule needs: looked up top-down, a
 * path only when its parent is a plain directory of the upper (the rule
 * stops there otherwise). Whiteouts are 0/0 character devices; opaque or
 * redirected directories carry overlayfs' trusted xattrs.
 */
export async function describeUpper(upper: string, changes: BaseChange[]): Promise<Map<string, UpperKind>> {
  const kinds = new Map<string, UpperKind>();
  const dirs: string[] = [];
  for (const p of pathsToDescribe(changes)) {
    if (p === "") {
      kinds.set("", "dir"); // the upper itself: our own subvolume's directory
      dirs.push("");
      continue;
    }
    const parent = p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "";
    if (kinds.get(parent) !== "dir") continue;
    const st = await lstatInRoot(upper, p);
    if (!st) continue;
    if (st.isDirectory()) {
      kinds.set(p, "dir");
      dirs.push(p);
    } else if (st.isCharacterDevice() && st.rdev === 0) kinds.set(p, "whiteout");
    else kinds.set(p, "other");
  }
  for (const d of await overlayMarkedDirs(upper, dirs)) kinds.set(d, "opaque-dir");
  return kinds;
}

// Node has no getxattr: python3 (already needed by Ansible) reads them, paths as argv, not followed.
// The system's python3 when there is one: a version manager's shim in PATH costs ~2 s a start (measured).
const XATTR_PROBE = `import os, sys
root = sys.argv[1]
for i, rel in enumerate(sys.argv[2:]):
    p = os.path.join(root, rel) if rel else root
    names = os.listxattr(p, follow_symlinks=False)
    if any(n in ("trusted.overlay.opaque", "trusted.overlay.redirect") for n in names):
        print(i)
`;

/** The directories (upper-relative, verified directories) overlayfs marked opaque or redirected. */
async function overlayMarkedDirs(upper: string, dirs: string[]): Promise<string[]> {
  if (dirs.length === 0) return [];
  const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const r = await run(python, ["-c", XATTR_PROBE, upper, ...dirs]);
  return r.stdout
    .split("\n")
    .filter((l) => /^[0-9]+$/.test(l))
    .map((l) => dirs[Number(l)]!)
    .filter((d) => d !== undefined);
}

/** The whole decision for one candidate: a rebase, or why not. */
export async function decideRebase(opts: {
  oldBaseRoot: string;
  newBaseRoot: string;
  oldUpper: string;
  scratch: string;
}): Promise<RebaseDecision> {
  const changes = await baseChanges(opts.oldBaseRoot, opts.newBaseRoot, opts.scratch);
  if (typeof changes === "string") return { rebase: false, why: changes };
  const conflict = rebaseConflict(changes, await describeUpper(opts.oldUpper, changes));
  return conflict ? { rebase: false, why: conflict } : { rebase: true };
}
