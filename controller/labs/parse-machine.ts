/**
 * Reads one machine entry of a lab spec (before expansion) into a template
 * that still carries its YAML nodes, so that cross-checks made later (unknown
 * network, address outside the subnet, port clash) can point at the line.
 */
import { parseSize } from "../../common/config.js";
import { ProtoctlError } from "../../common/errors.js";
import { isValidName, parseVersionRef } from "../../common/names.js";
import type { LabFileSpec, LabResources } from "./spec-types.js";
import { type Entry, join, type SpecNode, type SpecReader } from "./yaml-reader.js";

export const MACHINE_FIELDS = [
  "name",
  "base",
  "layers",
  "count",
  "boot",
  "privileged",
  "resources",
  "node",
  "nodeSelector",
  "env",
  "files",
  "startup",
  "networks",
  "ports",
] as const;

export interface NetworkRef {
  network: string;
  node: SpecNode;
  /** The address as written (dotted quad, optionally with /prefix). */
  address?: string;
  addressNode?: SpecNode;
}

export interface PortRef {
  protocol: "tcp" | "udp";
  hostPort: number;
  containerPort: number;
  node: SpecNode;
}

export interface MachineTemplate {
  template: string;
  templateNode: SpecNode;
  count?: number;
  countNode?: SpecNode;
  base: { name: string; version: number };
  layers: string[];
  boot: boolean;
  /** No user namespace for this machine (common/privilege.ts). */
  privileged: boolean;
  resources: LabResources;
  node: string;
  nodeSelector: Record<string, string>;
  env: Record<string, string>;
  files: LabFileSpec[];
  startup: string[];
  networks: NetworkRef[];
  ports: PortRef[];
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_KEY = /^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;
const MAX_FILE_BYTES = 1 << 20;
/** Files per machine (each is written into every env the template makes). */
const MAX_FILES = 256;

/**
 * Reads the fields of one machine entry. `template` is the name as written
 * (map key, or the `name:` of a list item). A field with a problem is
 * recorded on the reader and left at its default, so that the cross-checks
 * still run and the user sees every problem in one round.
 */
export function readMachine(
  r: SpecReader,
  template: string,
  templateNode: SpecNode,
  entries: Entry[],
  path: string,
): MachineTemplate {
  r.checkKeys(entries, MACHINE_FIELDS, path, `machine '${template}'`);
  const get = (k: string) => entries.find((e) => e.key === k);
  const m: MachineTemplate = {
    template,
    templateNode,
    base: { name: "", version: 0 },
    layers: [],
    boot: false,
    privileged: false,
    resources: { memoryBytes: 0, cpus: 0, pids: 0, diskBytes: 0 },
    node: "",
    nodeSelector: {},
    env: {},
    files: [],
    startup: [],
    networks: [],
    ports: [],
  };

  const base = get("base");
  if (!base) r.error(templateNode, path, `machine '${template}' needs a base (NAME or NAME@N)`);
  else {
    const s = r.str(base.value, join(path, "base"), "base");
    if (s !== undefined) {
      try {
        m.base = parseVersionRef("base", s);
      } catch (err) {
        r.error(
          base.value,
          join(path, "base"),
          `base '${s}': ${ProtoctlError.from(err).message}; write NAME or NAME@N`,
        );
      }
    }
  }

  const layers = get("layers");
  if (layers && !r.isNull(layers.value)) {
    const list = r.strList(layers.value, join(path, "layers"), "layers", true) ?? [];
    list.forEach((l, i) => {
      if (!isValidName(l)) r.error(layers.value, join(join(path, "layers"), i), `invalid layer name '${l}'`);
    });
    m.layers = list;
  }

  const count = get("count");
  if (count) {
    m.count = r.int(count.value, join(path, "count"), "count", 1, 512);
    m.countNode = count.value ?? count.keyNode;
  }

  const boot = get("boot");
  if (boot) m.boot = r.bool(boot.value, join(path, "boot"), "boot") ?? false;
  const priv = get("privileged");
  if (priv) m.privileged = r.bool(priv.value, join(path, "privileged"), "privileged") ?? false;

  const res = get("resources");
  if (res && !r.isNull(res.value)) m.resources = readResources(r, res.value, join(path, "resources"));

  const node = get("node");
  if (node && !r.isNull(node.value)) {
    const s = r.str(node.value, join(path, "node"), "node");
    if (s !== undefined && !isValidName(s))
      r.error(node.value, join(path, "node"), `invalid node name '${s}'`);
    else if (s !== undefined) m.node = s;
  }

  const sel = get("nodeSelector");
  if (sel && !r.isNull(sel.value)) {
    for (const e of r.entries(sel.value, join(path, "nodeSelector"), "nodeSelector") ?? []) {
      const p = join(join(path, "nodeSelector"), e.key);
      const v = r.str(e.value, p, `label '${e.key}'`, true);
      if (!LABEL_KEY.test(e.key)) r.error(e.keyNode, p, `invalid node label key '${e.key}'`);
      else if (v !== undefined && !LABEL_VALUE.test(v))
        r.error(e.value, p, `invalid value '${v}' for node label`);
      else if (v !== undefined) m.nodeSelector[e.key] = v;
    }
  }

  const env = get("env");
  if (env && !r.isNull(env.value)) {
    for (const e of r.entries(env.value, join(path, "env"), "env") ?? []) {
      const p = join(join(path, "env"), e.key);
      const v = r.isNull(e.value) ? "" : r.str(e.value, p, `env value of ${e.key}`, true);
      if (!ENV_KEY.test(e.key)) r.error(e.keyNode, p, `invalid environment variable name '${e.key}'`);
      else if (v?.includes("\0")) r.error(e.value, p, `env value of ${e.key} holds a NUL byte`);
      else if (v !== undefined) m.env[e.key] = v;
    }
  }

  const files = get("files");
  if (files && !r.isNull(files.value)) {
    const items = r.items(files.value, join(path, "files"), "files") ?? [];
    if (items.length > MAX_FILES) {
      r.error(
        files.value,
        join(path, "files"),
        `a machine may have at most ${MAX_FILES} files (has ${items.length})`,
      );
      items.length = 0;
    }
    const seen = new Set<string>();
    items.forEach((it, i) => {
      const f = readFile(r, it, join(join(path, "files"), i));
      if (!f) return;
      if (seen.has(f.path)) r.error(it, join(join(path, "files"), i), `file '${f.path}' is listed twice`);
      seen.add(f.path);
      m.files.push(f);
    });
  }

  const startup = get("startup");
  if (startup && !r.isNull(startup.value)) {
    const list = r.strList(startup.value, join(path, "startup"), "startup", true) ?? [];
    list.forEach((c, i) => {
      if (c.trim() === "" || c.includes("\0")) {
        r.error(startup.value, join(join(path, "startup"), i), "startup commands must be non-empty text");
      }
    });
    m.startup = list;
  }

  const nets = get("networks");
  if (nets && !r.isNull(nets.value)) m.networks = readNetworkRefs(r, nets.value, join(path, "networks"));

  const ports = get("ports");
  if (ports && !r.isNull(ports.value)) {
    const items = r.items(ports.value, join(path, "ports"), "ports") ?? [];
    items.forEach((it, i) => {
      const p = readPort(r, it, join(join(path, "ports"), i));
      if (p) m.ports.push(p);
    });
  }

  return m;
}

function readResources(r: SpecReader, node: SpecNode | null, path: string): LabResources {
  const out: LabResources = { memoryBytes: 0, cpus: 0, pids: 0, diskBytes: 0 };
  const entries = r.entries(node, path, "resources") ?? [];
  r.checkKeys(entries, ["memory", "cpus", "pids", "disk"], path, "resources");
  for (const e of entries) {
    const p = join(path, e.key);
    if (e.key === "memory" || e.key === "disk") {
      const bytes = readSize(r, e.value, p, e.key);
      if (bytes !== undefined) out[e.key === "memory" ? "memoryBytes" : "diskBytes"] = bytes;
    } else if (e.key === "cpus") {
      out.cpus = r.positive(e.value, p, "cpus", 1024) ?? 0;
    } else if (e.key === "pids") {
      out.pids = r.int(e.value, p, "pids", 1, 4_194_304) ?? 0;
    }
  }
  return out;
}

/** "512M", "2G", "1.5GiB" (binary units) or a number of bytes. */
function readSize(r: SpecReader, node: SpecNode | null, path: string, what: string): number | undefined {
  const raw = node?.value;
  const bytes = typeof raw === "number" ? raw : typeof raw === "string" ? parseSize(raw) : undefined;
  if (bytes === undefined || !Number.isSafeInteger(bytes) || bytes <= 0) {
    r.error(node, path, `${what} must be a size like 512M or 2G (got ${JSON.stringify(raw ?? null)})`);
    return undefined;
  }
  return bytes;
}

function readFile(r: SpecReader, node: SpecNode, path: string): LabFileSpec | undefined {
  const entries = r.entries(node, path, "a file entry");
  if (!entries) return undefined;
  r.checkKeys(entries, ["path", "content", "source", "encoding", "mode"], path, "a file entry");
  const get = (k: string) => entries.find((e) => e.key === k);
  const before = r.issues.length;
  const pathEntry = get("path");
  let filePath: string | undefined;
  if (!pathEntry) r.error(node, path, "a file entry needs a path");
  else {
    filePath = r.str(pathEntry.value, join(path, "path"), "path");
    const why = filePath === undefined ? undefined : checkFilePath(filePath);
    if (why) r.error(pathEntry.value, join(path, "path"), why);
  }
  const content = get("content");
  const source = get("source");
  const encoding = get("encoding");
  let contentBase64: string | undefined;
  let src: string | undefined;
  if (content && source) r.error(source.keyNode, path, "a file takes content or source, not both");
  else if (!content && !source) r.error(node, path, "a file needs content or source");
  let enc = "utf8";
  if (encoding) {
    enc = r.str(encoding.value, join(path, "encoding"), "encoding") ?? "utf8";
    if (enc !== "utf8" && enc !== "base64")
      r.error(encoding.value, join(path, "encoding"), "encoding is utf8 or base64");
  }
  if (content) {
    const text = r.isNull(content.value) ? "" : r.str(content.value, join(path, "content"), "content", true);
    if (text !== undefined && enc === "base64") {
      const clean = text.replace(/\s+/g, "");
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 !== 0) {
        r.error(content.value, join(path, "content"), "content is not valid base64");
      } else contentBase64 = clean;
    } else if (text !== undefined) contentBase64 = Buffer.from(text, "utf8").toString("base64");
    if (contentBase64 !== undefined && (contentBase64.length * 3) / 4 > MAX_FILE_BYTES) {
      r.error(content.value, join(path, "content"), `file content is larger than ${MAX_FILE_BYTES} bytes`);
    }
  }
  if (source) {
    src = r.str(source.value, join(path, "source"), "source");
    if (src !== undefined && (src === "" || src.includes("\0"))) {
      r.error(source.value, join(path, "source"), "source must be a file path");
    }
  }
  let mode = 0o644;
  const modeEntry = get("mode");
  if (modeEntry) {
    const parsed = readMode(r, modeEntry.value);
    if (parsed === undefined) {
      r.error(modeEntry.value, join(path, "mode"), 'mode must be octal permission bits like 0644 or "0755"');
    } else mode = parsed;
  }
  if (r.issues.length !== before || filePath === undefined) return undefined;
  return {
    path: filePath,
    mode,
    ...(contentBase64 !== undefined ? { contentBase64 } : {}),
    ...(src ? { source: src } : {}),
  };
}

/** Modes are always read as octal digits: `0644`, `644`, `"0755"` and `0o755` all mean what they look like. */
function readMode(r: SpecReader, node: SpecNode | null): number | undefined {
  const m = /^["']?(?:0o)?([0-7]{1,4})["']?$/.exec(r.text(node).trim());
  return m ? Number.parseInt(m[1]!, 8) : undefined;
}

/** Paths inside the machine: absolute, normalized, no `..`; the agent still confines them to the root. */
export function checkFilePath(p: string): string | undefined {
  if (!p.startsWith("/")) return `file path '${p}' must be absolute`;
  if (p.length > 1024) return "file path is longer than 1024 characters";
  if (p.includes("\0")) return "file path holds a NUL byte";
  const parts = p.slice(1).split("/");
  if (parts.some((s) => s === "" || s === "." || s === "..")) {
    return `file path '${p}' must be normalized (no empty, '.' or '..' parts, no trailing '/')`;
  }
  return undefined;
}

function readNetworkRefs(r: SpecReader, node: SpecNode | null, path: string): NetworkRef[] {
  const out: NetworkRef[] = [];
  const add = (name: string | undefined, nameNode: SpecNode, addrNode: SpecNode | null, p: string) => {
    if (name === undefined) return;
    if (out.some((n) => n.network === name)) {
      r.error(nameNode, p, `network '${name}' is joined twice`);
      return;
    }
    const ref: NetworkRef = { network: name, node: nameNode };
    if (addrNode && !r.isNull(addrNode)) {
      const a = r.str(addrNode, join(p, "address"), "address");
      if (a !== undefined) {
        ref.address = a;
        ref.addressNode = addrNode;
      }
    }
    out.push(ref);
  };
  if (r.isSeq(node)) {
    (r.items(node, path, "networks") ?? []).forEach((it, i) => {
      const p = join(path, i);
      if (r.isMap(it)) {
        const es = r.entries(it, p, "a network entry") ?? [];
        r.checkKeys(es, ["name", "address"], p, "a network entry");
        const nameE = es.find((e) => e.key === "name");
        if (!nameE) r.error(it, p, "a network entry needs a name");
        else
          add(
            r.str(nameE.value, join(p, "name"), "network name"),
            nameE.value ?? it,
            es.find((e) => e.key === "address")?.value ?? null,
            p,
          );
      } else add(r.str(it, p, "network name"), it, null, p);
    });
    return out;
  }
  for (const e of r.entries(node, path, "networks (a list of names or a mapping of name to address)") ?? []) {
    const p = join(path, e.key);
    if (r.isMap(e.value)) {
      const es = r.entries(e.value, p, "a network entry") ?? [];
      r.checkKeys(es, ["address"], p, `network '${e.key}' of a machine`);
      add(e.key, e.keyNode, es.find((x) => x.key === "address")?.value ?? null, p);
    } else add(e.key, e.keyNode, e.value, p);
  }
  return out;
}

function readPort(r: SpecReader, node: SpecNode, path: string): PortRef | undefined {
  let host: number | undefined;
  let container: number | undefined;
  let protocol: string | undefined = "tcp";
  if (r.isMap(node)) {
    const es = r.entries(node, path, "a port") ?? [];
    r.checkKeys(es, ["host", "container", "protocol"], path, "a port");
    const get = (k: string) => es.find((e) => e.key === k);
    const h = get("host");
    const c = get("container");
    if (!h || !c) {
      r.error(node, path, "a port needs host and container");
      return undefined;
    }
    host = r.int(h.value, join(path, "host"), "host port", 1, 65535);
    container = r.int(c.value, join(path, "container"), "container port", 1, 65535);
    const pr = get("protocol");
    if (pr) protocol = r.str(pr.value, join(path, "protocol"), "protocol");
  } else {
    const text = r.str(node, path, "a port (HOST:CONTAINER[/tcp|udp])", true);
    if (text === undefined) return undefined;
    const m = /^(\d{1,5}):(\d{1,5})(?:\/(\w+))?$/.exec(text);
    if (!m) {
      r.error(node, path, `port '${text}' must look like 8080:80 or 5353:53/udp`);
      return undefined;
    }
    [host, container, protocol] = [Number(m[1]), Number(m[2]), m[3] ?? "tcp"];
    if (host < 1 || host > 65535 || container < 1 || container > 65535) {
      r.error(node, path, `ports in '${text}' must be between 1 and 65535`);
      return undefined;
    }
  }
  if (protocol !== "tcp" && protocol !== "udp") {
    r.error(node, path, `protocol must be tcp or udp, not '${protocol}'`);
    return undefined;
  }
  if (host === undefined || container === undefined) return undefined;
  return { protocol, hostPort: host, containerPort: container, node };
}
