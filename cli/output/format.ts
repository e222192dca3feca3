/**
 * Listing output: aligned tables for people (`table`, `wide`), the API's
 * canonical protobuf JSON for scripts (`json`, `yaml`: what `fromJSON` reads
 * back, so output round-trips), and `-q` for names only.
 */
import { invalidArgument } from "../../common/errors.js";

export const OUTPUT_FORMATS = ["table", "wide", "json", "yaml"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface Column<T> {
  header: string;
  get(item: T): string;
  /** Shown only with `-o wide`. */
  wide?: boolean;
}

export interface ListSpec<T> {
  columns: Column<T>[];
  /** The name printed by `-q`. */
  name(item: T): string;
  /** Canonical JSON of one item (the generated `Message.toJSON`). */
  toJSON(item: T): unknown;
}

export interface ListOptions {
  output?: string;
  quiet?: boolean;
}

export function parseOutputFormat(raw: string | undefined): OutputFormat {
  const v = (raw ?? "table") as OutputFormat;
  if (!OUTPUT_FORMATS.includes(v)) {
    throw invalidArgument(`unknown output format ${JSON.stringify(raw)}`, {
      reason: "INVALID_FLAG",
      hint: `use -o ${OUTPUT_FORMATS.join("|")}`,
    });
  }
  return v;
}

/** Renders a listing; the result ends with a newline unless empty. */
export async function renderList<T>(
  items: readonly T[],
  spec: ListSpec<T>,
  opts: ListOptions,
): Promise<string> {
  const format = parseOutputFormat(opts.output);
  if (opts.quiet) return items.map((i) => `${spec.name(i)}\n`).join("");
  switch (format) {
    case "json":
      return `${JSON.stringify(
        items.map((i) => spec.toJSON(i)),
        null,
        2,
      )}\n`;
    case "yaml":
      return toYaml(items.map((i) => spec.toJSON(i)));
    default: {
      const cols = spec.columns.filter((c) => format === "wide" || !c.wide);
      return renderTable(
        cols.map((c) => c.header),
        items.map((i) => cols.map((c) => c.get(i))),
      );
    }
  }
}

/** Renders one object (describe): YAML for people by default, JSON on request. */
export async function renderObject(value: unknown, output: string | undefined): Promise<string> {
  const format = output ?? "yaml";
  if (format === "json") return `${JSON.stringify(value, null, 2)}\n`;
  if (format === "yaml" || format === "table" || format === "wide") return toYaml(value);
  throw invalidArgument(`unknown output format ${JSON.stringify(output)}`, {
    reason: "INVALID_FLAG",
    hint: "use -o yaml|json",
  });
}

/** The yaml package is loaded only here: it costs ~30 ms of start-up. */
async function toYaml(value: unknown): Promise<string> {
  const { stringify } = await import("yaml");
  return stringify(value, { lineWidth: 0 });
}

/** Left-aligned columns separated by three spaces, kubectl style; no trailing spaces. */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => displayWidth(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(widths[i]! - displayWidth(c))))
      .join("   ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].map((l) => `${l}\n`).join("");
}

function displayWidth(s: string): number {
  return [...s].length;
}

/** "3s", "5m", "2h", "4d" since the given Unix milliseconds; "-" when unset. */
export function age(ms: number | undefined, now = Date.now()): string {
  if (!ms) return "-";
  const s = Math.max(0, Math.floor((now - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** 1536 → "1.5K", binary units, "-" for 0. */
export function bytes(n: number | undefined): string {
  if (!n) return "-";
  const units = ["B", "K", "M", "G", "T"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 10 || u === 0 ? Math.round(v) : v.toFixed(1)}${units[u]}`;
}

/** ENV_PHASE_RUNNING → Running (for an enum's JSON name and its prefix). */
export function enumLabel(json: string, prefix: string): string {
  const rest = json.startsWith(prefix) ? json.slice(prefix.length) : json;
  if (rest === "UNSPECIFIED" || rest === "UNRECOGNIZED") return "-";
  return rest
    .toLowerCase()
    .split("_")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("");
}

/** {a: "1", b: "2"} → "a=1,b=2". */
export function labels(map: Record<string, string> | undefined): string {
  const entries = Object.entries(map ?? {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(",") : "-";
}
