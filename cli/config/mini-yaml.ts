/**
 * A reader and writer for the small YAML subset the CLI's config file uses:
 * nested block mappings whose leaves are plain scalars or JSON-style double
 * quoted strings. Why not the `yaml` package: loading it costs ~30 ms, a fifth
 * of the start-up budget of every command. The writer only emits this subset;
 * the reader returns `undefined` on anything else (flow style, lists, block
 * scalars, anchors, tags...) and the caller falls back to the full parser, so
 * a hand-edited file is still read correctly, just a little slower.
 */

export type MiniValue = string | boolean | number | null | MiniMap;
export interface MiniMap {
  [key: string]: MiniValue;
}

const KEY = /^([A-Za-z0-9_][A-Za-z0-9_.-]*):(?:\s+(.*))?$/;

/** Parses the subset; `undefined` means "not in the subset, use a real YAML parser". */
export function parseMiniYaml(text: string): MiniMap | undefined {
  const root: MiniMap = {};
  // Stack of (indent, map) for the open mappings.
  const stack: Array<{ indent: number; map: MiniMap }> = [{ indent: 0, map: root }];
  let pendingKey: { indent: number; key: string; parent: MiniMap } | undefined;
  for (const rawLine of text.split("\n")) {
    const line = rawLine.replace(/\r$/, "");
    if (/^\s*(#.*)?$/.test(line)) continue;
    if (line.startsWith("---") || line.startsWith("...")) {
      if (line.trim() === "---" && Object.keys(root).length === 0) continue;
      return undefined;
    }
    if (line.includes("\t")) return undefined;
    const indent = line.length - line.trimStart().length;
    const m = KEY.exec(line.trim());
    if (!m) return undefined;
    const key = m[1]!;
    const rest = stripComment(m[2] ?? "");
    if (rest === undefined) return undefined;

    if (pendingKey) {
      if (indent > pendingKey.indent) {
        const child: MiniMap = {};
        pendingKey.parent[pendingKey.key] = child;
        stack.push({ indent, map: child });
      } else {
        pendingKey.parent[pendingKey.key] = null;
      }
      pendingKey = undefined;
    }
    while (stack.length > 1 && indent < stack[stack.length - 1]!.indent) stack.pop();
    const top = stack[stack.length - 1]!;
    if (indent !== top.indent) return undefined;
    if (Object.hasOwn(top.map, key)) return undefined; // duplicate keys: let the real parser complain
    if (rest === "") {
      pendingKey = { indent, key, parent: top.map };
      continue;
    }
    const value = parseScalar(rest);
    if (value === undefined) return undefined;
    top.map[key] = value;
  }
  if (pendingKey) pendingKey.parent[pendingKey.key] = null;
  return root;
}

function stripComment(s: string): string | undefined {
  const t = s.trim();
  if (t.startsWith('"')) {
    // A quoted string may contain " #"; only accept a comment after the closing quote.
    const end = findClosingQuote(t);
    if (end < 0) return undefined;
    const after = t.slice(end + 1).trim();
    if (after !== "" && !after.startsWith("#")) return undefined;
    return t.slice(0, end + 1);
  }
  const hash = t.search(/\s#/);
  return (hash >= 0 ? t.slice(0, hash) : t).trim();
}

function findClosingQuote(s: string): number {
  for (let i = 1; i < s.length; i++) {
    if (s[i] === "\\") i++;
    else if (s[i] === '"') return i;
  }
  return -1;
}

function parseScalar(s: string): MiniValue | undefined {
  if (s.startsWith('"')) {
    try {
      const v: unknown = JSON.parse(s);
      return typeof v === "string" ? v : undefined;
    } catch {
      return undefined; // a YAML-only escape: the real parser knows it
    }
  }
  if (/^[[{|>&*!'%@`-]/.test(s) || s.includes(": ")) return undefined;
  if (s === "true") return true;
  if (s === "false") return false;
  if (s === "null" || s === "~") return null;
  if (/^-?[0-9]+(\.[0-9]+)?$/.test(s)) return Number(s);
  return s;
}

/** Writes a nested mapping in the subset; strings are always quoted when a plain scalar would be ambiguous. */
export function stringifyMiniYaml(map: MiniMap, indent = 0): string {
  let out = "";
  const pad = " ".repeat(indent);
  for (const [key, value] of Object.entries(map)) {
    if (!KEY.test(`${key}:`)) throw new Error(`config key ${JSON.stringify(key)} cannot be written`);
    if (value === undefined) continue;
    if (value !== null && typeof value === "object") {
      const inner = stringifyMiniYaml(value, indent + 2);
      out += inner === "" ? `${pad}${key}: null\n` : `${pad}${key}:\n${inner}`;
    } else {
      out += `${pad}${key}: ${scalar(value)}\n`;
    }
  }
  return out;
}

function scalar(v: string | boolean | number | null): string {
  if (v === null) return "null";
  if (typeof v === "boolean" || typeof v === "number") return String(v);
  const plainSafe = /^[A-Za-z0-9_./][A-Za-z0-9_./:@+=-]*$/.test(v) && parseScalar(v) === v;
  return plainSafe ? v : JSON.stringify(v);
}
