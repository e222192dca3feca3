/**
 * Configuration loading, in order of precedence (last wins):
 * built-in defaults < YAML file < environment variables < command-line flags.
 *
 * Keys are nested objects; an environment variable maps to a key path by
 * upper snake case under a prefix: with prefix PROTOCTL_AGENT, `pool.sizeBytes`
 * is PROTOCTL_AGENT_POOL_SIZE_BYTES. Values from the environment and flags
 * are coerced to the type of the default.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { invalidArgument } from "./errors.js";

export type ConfigValue = string | number | boolean | string[] | ConfigObject;
export interface ConfigObject {
  [key: string]: ConfigValue;
}

export interface LoadOptions {
  /** YAML file; missing file is fine unless `fileRequired`. */
  file?: string;
  fileRequired?: boolean;
  envPrefix?: string;
  env?: NodeJS.ProcessEnv;
  /** Flat map of dotted key paths ("pool.sizeBytes") to values from flags. */
  flags?: Record<string, unknown>;
}

/**
 * The YAML parser, loaded only when a config file is read: the agent and the
 * controller usually run on flags alone, and `yaml` costs a few MB of RSS.
 */
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)("yaml") as typeof import("yaml");
  return yaml.parse(text);
}

export function loadConfig<T extends ConfigObject>(defaults: T, opts: LoadOptions = {}): T {
  const out = structuredClone(defaults) as ConfigObject;
  if (opts.file) {
    let text: string | undefined;
    try {
      text = readFileSync(opts.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || opts.fileRequired) {
        throw invalidArgument(`cannot read config file ${opts.file}: ${(err as Error).message}`, {
          reason: "CONFIG_UNREADABLE",
        });
      }
    }
    if (text !== undefined) {
      let doc: unknown;
      try {
        doc = parseYaml(text);
      } catch (err) {
        throw invalidArgument(`config file ${opts.file} is not valid YAML: ${(err as Error).message}`, {
          reason: "CONFIG_INVALID",
        });
      }
      if (doc != null) {
        if (typeof doc !== "object" || Array.isArray(doc)) {
          throw invalidArgument(`config file ${opts.file} must hold a mapping`, { reason: "CONFIG_INVALID" });
        }
        mergeInto(out, doc as ConfigObject, defaults, opts.file);
      }
    }
  }
  if (opts.envPrefix) {
    const env = opts.env ?? process.env;
    for (const path of leafPaths(defaults)) {
      const name = `${opts.envPrefix}_${path.map(toUpperSnake).join("_")}`;
      const raw = env[name];
      if (raw !== undefined && raw !== "") setPath(out, path, coerce(getPath(defaults, path), raw, name));
    }
  }
  for (const [dotted, value] of Object.entries(opts.flags ?? {})) {
    if (value === undefined) continue;
    const path = dotted.split(".");
    const def = getPath(defaults, path);
    if (def === undefined)
      throw invalidArgument(`unknown configuration key ${dotted}`, { reason: "CONFIG_KEY" });
    setPath(
      out,
      path,
      typeof value === "string" ? coerce(def, value, `--${dotted}`) : (value as ConfigValue),
    );
  }
  return out as T;
}

function mergeInto(target: ConfigObject, src: ConfigObject, defaults: ConfigObject, where: string): void {
  for (const [k, v] of Object.entries(src)) {
    const def = defaults[k];
    if (def === undefined) throw invalidArgument(`unknown key "${k}" in ${where}`, { reason: "CONFIG_KEY" });
    if (isObject(def)) {
      if (!isObject(v))
        throw invalidArgument(`"${k}" in ${where} must be a mapping`, { reason: "CONFIG_INVALID" });
      mergeInto(target[k] as ConfigObject, v, def, where);
    } else {
      target[k] = typeof v === "string" && typeof def !== "string" ? coerce(def, v, k) : (v as ConfigValue);
    }
  }
}

function isObject(v: unknown): v is ConfigObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function leafPaths(obj: ConfigObject, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (isObject(v)) out.push(...leafPaths(v, [...prefix, k]));
    else out.push([...prefix, k]);
  }
  return out;
}

function getPath(obj: ConfigObject, path: string[]): ConfigValue | undefined {
  let cur: ConfigValue | undefined = obj;
  for (const p of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

function setPath(obj: ConfigObject, path: string[], value: ConfigValue): void {
  let cur = obj;
  for (const p of path.slice(0, -1)) {
    if (!isObject(cur[p])) cur[p] = {};
    cur = cur[p] as ConfigObject;
  }
  cur[path[path.length - 1]!] = value;
}

function toUpperSnake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Coerces a string to the type of the default value; sizes accept K/M/G/T suffixes for numbers. */
export function coerce(def: ConfigValue | undefined, raw: string, where: string): ConfigValue {
  if (typeof def === "number") {
    const n = parseSize(raw);
    if (n === undefined)
      throw invalidArgument(`${where}: "${raw}" is not a number`, { reason: "CONFIG_INVALID" });
    return n;
  }
  if (typeof def === "boolean") {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw invalidArgument(`${where}: "${raw}" is not a boolean`, { reason: "CONFIG_INVALID" });
  }
  if (Array.isArray(def))
    return raw
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  return raw;
}

/** "512M", "2G", "1.5GiB", "1048576" → bytes (or the plain number). */
export function parseSize(raw: string): number | undefined {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$/.exec(raw);
  if (!m) return undefined;
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * mult);
}
