/**
 * A thin reader over the `yaml` package's node tree that keeps positions:
 * every value read is checked for its type, and every problem is recorded
 * with the line and column of the node it is about, so that a spec with five
 * mistakes reports all five at once. Aliases and merge keys (`<<: *defaults`)
 * are resolved here, so the spec parser never sees them.
 */
import { type Document, isAlias, isMap, isScalar, isSeq, type LineCounter, type Node } from "yaml";
import type { LabSpecIssue } from "./spec-types.js";

export interface Entry {
  key: string;
  keyNode: Node;
  /** null when the key has no value (`front:`). */
  value: Node | null;
}

export class SpecReader {
  readonly issues: LabSpecIssue[] = [];

  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** 1-based line and column of a node; 0/0 when unknown. */
  pos(node: Node | null | undefined): { line: number; col: number } {
    const start = node?.range?.[0];
    if (start === undefined) return { line: 0, col: 0 };
    return this.lines.linePos(start);
  }

  error(node: Node | null | undefined, path: string, message: string): void {
    this.issues.push({ ...this.pos(node), path, message });
  }

  /** Follows aliases; null stays null. */
  resolve(node: Node | null | undefined): Node | null {
    let n: unknown = node ?? null;
    for (let i = 0; i < 32 && isAlias(n); i++) n = n.resolve(this.doc) ?? null;
    return (n as Node | null) ?? null;
  }

  isNull(node: Node | null | undefined): boolean {
    const n = this.resolve(node);
    return n === null || (isScalar(n) && n.value === null);
  }

  isMap(node: Node | null | undefined): boolean {
    return isMap(this.resolve(node));
  }

  isSeq(node: Node | null | undefined): boolean {
    return isSeq(this.resolve(node));
  }

  /** The items of a sequence; undefined (with an error) when the node is something else. */
  items(node: Node | null, path: string, what: string): Node[] | undefined {
    const n = this.resolve(node);
    if (isSeq(n)) return n.items.map((it) => it as Node);
    this.error(node, path, `${what} must be a list`);
    return undefined;
  }

  /**
   * The entries of a mapping with string keys, merge keys applied (explicit
   * keys win over merged ones, earlier merges over later ones). Undefined
   * (with an error) when the node is not a mapping.
   */
  entries(node: Node | null, path: string, what: string): Entry[] | undefined {
    const n = this.resolve(node);
    if (!isMap(n)) {
      this.error(node, path, `${what} must be a mapping`);
      return undefined;
    }
    const own: Entry[] = [];
    const merged: Entry[] = [];
    for (const pair of n.items) {
      const keyNode = pair.key as Node;
      const value = (pair.value as Node | null) ?? null;
      if (isScalar(keyNode) && (typeof keyNode.value === "symbol" || keyNode.value === "<<")) {
        const sources = this.isSeq(value) ? (this.resolve(value) as { items: Node[] }).items : [value];
        for (const src of sources) {
          const sub = this.entries(src, path, "a merged value (<<)");
          if (sub) merged.push(...sub);
        }
        continue;
      }
      if (!isScalar(keyNode) || (typeof keyNode.value !== "string" && typeof keyNode.value !== "number")) {
        this.error(keyNode, path, `keys of ${what} must be plain strings`);
        continue;
      }
      own.push({ key: String(keyNode.value), keyNode, value });
    }
    const seen = new Set(own.map((e) => e.key));
    for (const e of merged) {
      if (!seen.has(e.key)) {
        seen.add(e.key);
        own.push(e);
      }
    }
    return own;
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
  str(node: Node | null, path: string, what: string, coerce = false): string | undefined {
    const n = this.resolve(node);
    if (isScalar(n)) {
      if (typeof n.value === "string") return n.value;
      if (coerce && (typeof n.value === "number" || typeof n.value === "boolean")) {
        return rawSource(n) ?? String(n.value);
      }
    }
    this.error(node, path, `${what} must be a string`);
    return undefined;
  }

  bool(node: Node | null, path: string, what: string): boolean | undefined {
    const n = this.resolve(node);
    if (isScalar(n) && typeof n.value === "boolean") return n.value;
    this.error(node, path, `${what} must be true or false`);
    return undefined;
  }

  /** A whole number within [min, max]. */
  int(node: Node | null, path: string, what: string, min: number, max: number): number | undefined {
    const n = this.resolve(node);
    if (isScalar(n) && typeof n.value === "number" && Number.isInteger(n.value)) {
      if (n.value >= min && n.value <= max) return n.value;
      this.error(node, path, `${what} must be between ${min} and ${max}`);
      return undefined;
    }
    this.error(node, path, `${what} must be a whole number`);
    return undefined;
  }

  /** A number > 0 (fractions allowed), e.g. cpus: 0.5. */
  positive(node: Node | null, path: string, what: string, max: number): number | undefined {
    const n = this.resolve(node);
    if (isScalar(n) && typeof n.value === "number" && Number.isFinite(n.value)) {
      if (n.value > 0 && n.value <= max) return n.value;
      this.error(node, path, `${what} must be above 0 and at most ${max}`);
      return undefined;
    }
    this.error(node, path, `${what} must be a number`);
    return undefined;
  }

  /** A list of strings; a single string is accepted as a list of one when `single`. */
  strList(node: Node | null, path: string, what: string, single = false): string[] | undefined {
    const n = this.resolve(node);
    if (single && isScalar(n) && typeof n.value === "string") return [n.value];
    const items = this.items(node, path, what);
    if (!items) return undefined;
    const out: string[] = [];
    items.forEach((it, i) => {
      const s = this.str(it, `${path}[${i}]`, `each entry of ${what}`);
      if (s !== undefined) out.push(s);
    });
    return out.length === items.length ? out : undefined;
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
