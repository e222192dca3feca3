/**
 * The CLI's config file and its named contexts (kubectl-style): which
 * controller to talk to and with which credentials.
 *
 * File: $PROTOCTL_CONFIG, else $XDG_CONFIG_HOME/protoctl/config.yaml, else
 * ~/.config/protoctl/config.yaml.
 *
 *   current-context: local
 *   contexts:
 *     local:
 *       controller: 127.0.0.1:7443
 *       ca: /var/lib/protoctl/local/controller/tls/ca.pem   # or ca-data: "-----BEGIN..."
 *       cert: ...                                          # or cert-data
 *       key: ...                                           # or key-data
 *       insecure: false
 *
 * Which context: --context, else $PROTOCTL_CONTEXT, else current-context.
 * $PROTOCTL_CONTROLLER replaces the chosen context's address.
 */
import { readFileSync } from "node:fs";
import { chmod, mkdir, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { invalidArgument, notFound } from "../../common/errors.js";
import { configPath } from "./config-path.js";
import { type MiniMap, parseMiniYaml, stringifyMiniYaml } from "./mini-yaml.js";

/** Default controller address when nothing is configured (what `protoctl up` listens on). */
export const DEFAULT_CONTROLLER = "127.0.0.1:7443";

export interface ContextEntry {
  controller: string;
  insecure?: boolean;
  /** File paths of PEM credentials. */
  ca?: string;
  cert?: string;
  key?: string;
  /** Inline PEM credentials (win over the paths). */
  caData?: string;
  certData?: string;
  keyData?: string;
  /** Send `base import --dir/--tar` as bytes instead of a path on the controller's host. */
  upload?: boolean;
  /** Name in the controller's certificate when it differs from the address's host. */
  serverName?: string;
}

export interface CliConfig {
  currentContext?: string;
  contexts: Record<string, ContextEntry>;
}

export interface ResolvedContext extends ContextEntry {
  /** Context name, or "" when none is configured and defaults apply. */
  name: string;
  /** Where the address came from, for messages. */
  source: "context" | "env" | "default";
}

type Env = Record<string, string | undefined>;

export { configPath };

const FIELD_KEYS: Array<[keyof ContextEntry, string]> = [
  ["controller", "controller"],
  ["insecure", "insecure"],
  ["ca", "ca"],
  ["cert", "cert"],
  ["key", "key"],
  ["caData", "ca-data"],
  ["certData", "cert-data"],
  ["keyData", "key-data"],
  ["upload", "upload"],
  ["serverName", "server-name"],
];

/** Reads the config file; a missing file is an empty config. */
export async function loadCliConfig(path = configPath()): Promise<CliConfig> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { contexts: {} };
    throw invalidArgument(`cannot read ${path}: ${(err as Error).message}`, { reason: "CONFIG_UNREADABLE" });
  }
  let doc: unknown = parseMiniYaml(text);
  if (doc === undefined) {
    const { parse } = await import("yaml");
    try {
      doc = parse(text);
    } catch (err) {
      throw invalidArgument(`${path} is not valid YAML: ${(err as Error).message}`, {
        reason: "CONFIG_INVALID",
        hint: `fix or remove ${path}`,
      });
    }
  }
  return fromDocument(doc, path);
}

/** Validates a parsed document into a CliConfig. */
export function fromDocument(doc: unknown, path: string): CliConfig {
  if (doc == null) return { contexts: {} };
  if (typeof doc !== "object" || Array.isArray(doc)) throw badConfig(path, "the top level must be a mapping");
  const d = doc as Record<string, unknown>;
  const cfg: CliConfig = { contexts: {} };
  if (d["current-context"] != null) cfg.currentContext = String(d["current-context"]);
  const ctxs = d.contexts ?? {};
  if (typeof ctxs !== "object" || Array.isArray(ctxs)) throw badConfig(path, "`contexts` must be a mapping");
  for (const [name, raw] of Object.entries(ctxs as Record<string, unknown>)) {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw badConfig(path, `context ${name} must be a mapping`);
    }
    const r = raw as Record<string, unknown>;
    const entry: Partial<Record<keyof ContextEntry, unknown>> = {};
    for (const [field, key] of FIELD_KEYS) {
      const v = r[key];
      if (v == null) continue;
      entry[field] = field === "insecure" || field === "upload" ? v === true || v === "true" : String(v);
    }
    if (!entry.controller) throw badConfig(path, `context ${name} has no controller address`);
    cfg.contexts[name] = entry as unknown as ContextEntry;
  }
  return cfg;
}

function badConfig(path: string, why: string) {
  return invalidArgument(`invalid config file ${path}: ${why}`, {
    reason: "CONFIG_INVALID",
    hint: `fix ${path}, or remove it and run \`protoctl up\` or \`protoctl context add\``,
  });
}

/** Serialises the config in the subset the fast reader understands. */
export function toYaml(cfg: CliConfig): string {
  const contexts: MiniMap = {};
  for (const [name, c] of Object.entries(cfg.contexts)) {
    const m: MiniMap = {};
    for (const [field, key] of FIELD_KEYS) {
      const v = c[field];
      if (v !== undefined && v !== "") m[key] = v;
    }
    contexts[name] = m;
  }
  const doc: MiniMap = {};
  if (cfg.currentContext) doc["current-context"] = cfg.currentContext;
  doc.contexts = contexts;
  return "# protoctl CLI configuration (see `protoctl context --help`)\n" + stringifyMiniYaml(doc);
}

/** Writes the config atomically with mode 0600 (it may hold keys). */
export async function saveCliConfig(cfg: CliConfig, path = configPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, toYaml(cfg), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/** Picks the context for this invocation. */
export function resolveContext(cfg: CliConfig, flagContext: string | undefined, env: Env): ResolvedContext {
  const wanted = flagContext || env.PROTOCTL_CONTEXT || cfg.currentContext;
  let resolved: ResolvedContext;
  if (wanted) {
    const entry = cfg.contexts[wanted];
    if (!entry) {
      const known = Object.keys(cfg.contexts);
      throw notFound(`no context named ${JSON.stringify(wanted)}`, {
        reason: "CONTEXT_NOT_FOUND",
        hint: known.length
          ? `known contexts: ${known.join(", ")} (see \`protoctl context ls\`)`
          : "run `protoctl up` to create the local context, or `protoctl context add`",
      });
    }
    resolved = { ...entry, name: wanted, source: "context" };
  } else {
    resolved = { controller: DEFAULT_CONTROLLER, insecure: true, name: "", source: "default" };
  }
  if (env.PROTOCTL_CONTROLLER) {
    resolved = { ...resolved, controller: env.PROTOCTL_CONTROLLER, source: "env" };
  }
  return resolved;
}

/** True when the address is on this machine, where the controller can read local paths. */
export function isLocalAddress(address: string): boolean {
  const host = address
    .replace(/^[a-z]+:\/\//, "")
    .replace(/:\d+$/, "")
    .replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\./.test(host) || host.startsWith("unix:");
}
