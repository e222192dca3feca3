/**
 * A thin reader over a lab file that keeps positions: every value read is
 * checked for its type, and every problem is recorded with the line and
 * column it is about, so that a spec with five mistakes reports all five at
 * once.
 *
 * Anchors, aliases and merge keys (`<<: *defaults`) are resolved by the
 * `yaml` library itself (`merge: true`, `toJS` with `maxAliasCount`), which
 * refuses a document whose aliases would expand past the limit before
 * building it (an alias/merge bomb of a few hundred bytes otherwise expands
 * exponentially). The reader walks the resulting plain values; beside each
 * it keeps the source node it came from, when there is one, for positions and
 * the text as written: a key from a merge points at the mapping that merged
 * it (or, one merge deep, at the merged mapping), a value through an alias at
 * its anchor.
 */
import { type Document, isAlias, isMap, isScalar, isSeq, type LineCounter, type Node, visit } from "yaml";
import type { LabSpecIssue } from "./spec-types.js";

/** Alias uses (weighted by what they expand to) one lab file may hold: generous for `<<: *defaults` on every machine. */
export const MAX_ALIAS_COUNT = 1000;

/** A value of the lab file (aliases and merges resolved) and the source node it was read at. */
export interface SpecNode {
  readonly value: unknown;
  /** Where it was written (or the nearest enclosing node); null when unknown. */
  readonly src: Node | null;
  /** True when `src` is exactly this value's node (so its source text is this value's). */
  readonly exact: boolean;
}

export interface Entry {
  key: string;
  keyNode: SpecNode;
  /** Its value is null when the key has none (`front:`). */
  value: SpecNode;
}

export class SpecReader {
  readonly issues: LabSpecIssue[] = [];
  /** Alias → its anchor node, from one pass over the document (no expansion). */
  private readonly anchorOf = new Map<Node, Node>();

  private constructor(
    private readonly lines: LineCounter,
    readonly rootNode: SpecNode,
  ) {}

  /**
   * Resolves the document's anchors and merges through the yaml library.
   * Undefined (with an issue) when the aliases expand past `maxAliasCount`
   * or a merge or alias is invalid.
   */
  static open(doc: Document, lines: LineCounter, maxAliasCount = MAX_ALIAS_COUNT): SpecReader | LabSpecIssue {
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount, mapAsMap: true });
    } catch (err) {
      const msg = (err as Error).message;
      const bomb = /Excessive alias count/.test(msg);
      return {
        line: 0,
        col: 0,
        path: "",
        message: bomb
          ? `anchors and aliases expand too much (more than ${maxAliasCount} alias uses): refused`
          : `invalid alias or merge: ${msg}`,
      };
    }
    const contents = (doc.contents as Node | null) ?? null;
    const r = new SpecReader(lines, { value, src: contents, exact: contents !== null });
    const current = new Map<string, Node>();
    visit(doc, {
      Node: (_k, node) => {
        if (isAlias(node)) {
          const a = current.get(node.source);
          if (a) r.anchorOf.set(node, a);
        } else if ((node as { anchor?: string }).anchor) {
          // document order: an alias refers to the last anchor of its name before it
          current.set((node as { anchor: string }).anchor, node);
        }
      },
    });
    return r;
  }

  /** 1-based line and column of a value; 0/0 when unknown. */
  pos(node: SpecNode | null | undefined): { line: number; col: number } {
    const start = node?.src?.range?.[0];
    if (start === undefined) return { line: 0, col: 0 };
    return this.lines.linePos(start);
  }

  error(node: SpecNode | null | undefined, path: string, message: string): void {
    this.issues.push({ ...this.pos(node), path, message });
  }

  isNull(node: SpecNode | null | undefined): boolean {
    return node === null || node === undefined || node.value === null || node.value === undefined;
  }

  isMap(node: SpecNode | null | undefined): boolean {
    return node?.value instanceof Map;
  }

  isSeq(node: SpecNode | null | undefined): boolean {
    return Array.isArray(node?.value);
  }

  /** The items of a sequence; undefined (with an error) when the node is something else. */
  items(node: SpecNode | null, path: string, what: string): SpecNode[] | undefined {
    const v = node?.value;
    if (!Array.isArray(v)) {
      this.error(node, path, `${what} must be a list`);
      return undefined;
    }
    const src = this.deref(node?.src ?? null);
    return v.map((item, i) => {
      const s = isSeq(src) ? this.deref((src.items[i] as Node | undefined) ?? null) : null;
      return s ? { value: item, src: s, exact: true } : { value: item, src: node?.src ?? null, exact: false };
    });
  }

  /**
   * The entries of a mapping with string keys, merge keys already applied by
   * the library (explicit keys win over merged ones, earlier merges over later
   * ones). Undefined (with an error) when the node is not a mapping.
   */
  entries(node: SpecNode | null, path: string, what: string): Entry[] | undefined {
    const v = node?.value;
    if (!(v instanceof Map)) {
      this.error(node, path, `${what} must be a mapping`);
      return undefined;
    }
    const out: Entry[] = [];
    for (const [k, value] of v) {
      const found = this.pairOf(node?.src ?? null, k);
      const keyNode: SpecNode = found
        ? { value: k, src: found.key, exact: true }
        : { value: k, src: node?.src ?? null, exact: false };
      if (typeof k !== "string" && typeof k !== "number") {
        this.error(keyNode, path, `keys of ${what} must be plain strings`);
        continue;
      }
      const src = found?.value ? this.deref(found.value) : null;
      out.push({
        key: String(k),
        keyNode,
        value: src
          ? { value, src, exact: true }
          : { value, src: found?.key ?? node?.src ?? null, exact: false },
      });
    }
    return out;
  }

  /** The text as written for a scalar read straight from the file ("0644", "1.10"), else String(value). */
  text(node: SpecNode | null): string {
    const raw =
      node?.exact && isScalar(node.src) && node.src.value === node.value ? rawSource(node.src) : undefined;
    if (raw !== undefined) return raw;
    const v = node?.value;
    return v === undefined || v === null ? "" : String(v);
  }

  /** Reports keys not in `allowed`, suggesting the nearest allowed one. */
  checkKeys(entries: Entry[], allowed: readonly string[], path: string, what: string): void {
    for (const e of entries) {
      if (allowed.includes(e.key)) continue;
      const near = nearest(e.key, allowed);
      const hint = near ? ` (did you mean '${near}'?)` : ` (allowed: ${allowed.join(", ")})`;
      this.error(e.keyNode, join(path, e.key), `unknown field '${e.key}' in ${what}${hint}`);
    }
  }

  /** A string scalar; numbers and booleans are refused unless `coerce` (env values, labels). */
  str(node: SpecNode | null, path: string, what: string, coerce = false): string | undefined {
    const v = node?.value;
    if (typeof v === "string") return v;
    if (coerce && (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint"))
      return this.text(node);
    this.error(node, path, `${what} must be a string`);
    return undefined;
  }

  bool(node: SpecNode | null, path: string, what: string): boolean | undefined {
    if (typeof node?.value === "boolean") return node.value;
    this.error(node, path, `${what} must be true or false`);
    return undefined;
  }

  /** A whole number within [min, max]. */
  int(node: SpecNode | null, path: string, what: string, min: number, max: number): number | undefined {
    const raw = node?.value;
    const v = typeof raw === "bigint" ? Number(raw) : raw;
    if (typeof v === "number" && Number.isInteger(v)) {
      if (v >= min && v <= max) return v;
      this.error(node, path, `${what} must be between ${min} and ${max}`);
      return undefined;
    }
    this.error(node, path, `${what} must be a whole number`);
    return undefined;
  }

  /** A number > 0 (fractions allowed), e.g. cpus: 0.5. */
  positive(node: SpecNode | null, path: string, what: string, max: number): number | undefined {
    const v = node?.value;
    if (typeof v === "number" && Number.isFinite(v)) {
      if (v > 0 && v <= max) return v;
      this.error(node, path, `${what} must be above 0 and at most ${max}`);
      return undefined;
    }
    this.error(node, path, `${what} must be a number`);
    return undefined;
  }

  /** A list of strings; a single string is accepted as a list of one when `single`. */
  strList(node: SpecNode | null, path: string, what: string, single = false): string[] | undefined {
    if (single && typeof node?.value === "string") return [node.value];
    const items = this.items(node, path, what);
    if (!items) return undefined;
    const out: string[] = [];
    items.forEach((it, i) => {
      const s = this.str(it, `${path}[${i}]`, `each entry of ${what}`);
      if (s !== undefined) out.push(s);
    });
    return out.length === items.length ? out : undefined;
  }

  /** An alias's anchor (one step, from the table), else the node itself. */
  private deref(node: Node | null): Node | null {
    return node && isAlias(node) ? (this.anchorOf.get(node) ?? null) : node;
  }

  /**
   * The source pair of key `k` in mapping node `src`: its own pair, else one
   * in a mapping it merges directly (one level only: positions, not values).
   */
  private pairOf(src: Node | null, k: unknown): { key: Node; value: Node | null } | undefined {
    const own = (m: Node | null) => {
      const n = this.deref(m);
      if (!isMap(n)) return undefined;
      for (const p of n.items) {
        const key = p.key as Node;
        if (isScalar(key) && key.value === k) return { key, value: (p.value as Node | null) ?? null };
      }
      return undefined;
    };
    const direct = own(src);
    if (direct) return direct;
    const m = this.deref(src);
    if (!isMap(m)) return undefined;
    for (const p of m.items) {
      const key = p.key as Node;
      if (!isScalar(key) || typeof key.value !== "symbol") continue;
      const v = this.deref((p.value as Node | null) ?? null);
      for (const s of isSeq(v) ? (v.items as Node[]) : [v]) {
        const hit = own(s);
        if (hit) return hit;
      }
    }
    return undefined;
  }
}

/** The scalar's text as written (e.g. "0644" for a mode, "1.10" for a version), when kept. */
export function rawSource(node: Node | null): string | undefined {
  const tok = (node as { srcToken?: { source?: unknown } } | null)?.srcToken;
  return typeof tok?.source === "string" ? tok.source : undefined;
}

export function join(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

/** The allowed word within edit distance 2 of `word`, if one. */
function nearest(word: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const a of allowed) {
    const d = editDistance(word.toLowerCase(), a.toLowerCase());
    if (d < bestD) {
      best = a;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
