/**
 * The parts of OCI image JSON documents the import reads (pure, unit
 * tested): index and manifest descriptors, and the config's run defaults
 * (`Env`, `WorkingDir`, `User`, `Entrypoint`, `Cmd`) and layer diff ids.
 * The documents come from an untrusted archive: every field used is
 * type-checked here and refused with INVALID_ARGUMENT when wrong.
 */
import { invalidArgument } from "../../../../common/errors.js";
import type { ImageConfig } from "../../../../proto/gen/protoctl/v1/types.js";

export interface Descriptor {
  mediaType: string;
  /** "sha256:<64 hex>" */
  digest: string;
  /** -1 when the document does not say (docker save's manifest.json). */
  size: number;
  platform?: { os?: string; architecture?: string };
}

export interface ParsedConfig {
  image: ImageConfig;
  /** Digests of the uncompressed layers, bottom first ("sha256:..."). */
  diffIds: string[];
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const INDEX_TYPES = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);

export function bad(what: string, hint?: string): never {
  throw invalidArgument(`invalid OCI archive: ${what}`, { reason: "BAD_ARCHIVE", ...(hint ? { hint } : {}) });
}

export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return bad(`${what} is not JSON`);
  }
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string" || s.includes("\0")))
    bad(`${what} is not a list of strings`);
  return v as string[];
}

function str(v: unknown, what: string): string {
  if (v === undefined || v === null) return "";
  if (typeof v !== "string" || v.includes("\0")) bad(`${what} is not a string`);
  return v;
}

export function descriptor(v: unknown, what: string): Descriptor {
  const d = obj(v, what);
  const digest = str(d.digest, `${what}.digest`);
  if (!DIGEST.test(digest)) bad(`${what} has digest ${JSON.stringify(digest)} (sha256 only)`);
  const size = d.size === undefined ? -1 : d.size;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < -1) bad(`${what}.size is not a size`);
  const p = d.platform === undefined ? undefined : obj(d.platform, `${what}.platform`);
  return {
    mediaType: str(d.mediaType, `${what}.mediaType`),
    digest,
    size,
    ...(p ? { platform: { os: str(p.os, "os"), architecture: str(p.architecture, "architecture") } } : {}),
  };
}

export function isIndex(d: Descriptor): boolean {
  return INDEX_TYPES.has(d.mediaType);
}

/** The OCI architecture name of this host (Node's process.arch). */
export function hostArch(arch: string = process.arch): string {
  return ({ x64: "amd64", ia32: "386" } as Record<string, string>)[arch] ?? arch;
}

/**
 * The manifest to import from an index's list: the only one, else the one
 * for linux on this host's architecture (refused when none or several fit).
 */
export function pickManifest(index: unknown, arch = hostArch()): Descriptor {
  const list = obj(index, "index").manifests;
  if (!Array.isArray(list) || list.length === 0) bad("the index lists no manifest");
  const all = list.map((m, i) => descriptor(m, `manifests[${i}]`));
  if (all.length === 1) return all[0]!;
  const fit = all.filter(
    (d) => !d.platform || (d.platform.os === "linux" && d.platform.architecture === arch),
  );
  if (fit.length !== 1) {
    bad(
      `the index lists ${all.length} manifests and ${fit.length} of them are for linux/${arch}`,
      "export a single image (e.g. `skopeo copy docker://IMG oci-archive:img.tar`)",
    );
  }
  return fit[0]!;
}

/** An image manifest's config and layer descriptors. */
export function parseManifest(v: unknown): { config: Descriptor; layers: Descriptor[] } {
  const m = obj(v, "manifest");
  const layers = m.layers;
  if (!Array.isArray(layers)) bad("the manifest has no layers list");
  return {
    config: descriptor(m.config, "manifest.config"),
    layers: layers.map((l, i) => descriptor(l, `manifest.layers[${i}]`)),
  };
}

/** docker save's manifest.json: its one image's config and layer paths inside the archive. */
export function parseDockerManifest(v: unknown): { config: string; layers: string[] } {
  if (!Array.isArray(v) || v.length === 0) bad("manifest.json lists no image");
  if (v.length > 1) bad(`manifest.json lists ${v.length} images`, "save a single image");
  const m = obj(v[0], "manifest.json[0]");
  const config = str(m.Config, "manifest.json Config");
  if (!config) bad("manifest.json has no Config");
  return { config, layers: strings(m.Layers, "manifest.json Layers") };
}

/** The config's run defaults and diff ids. */
export function parseConfig(v: unknown): ParsedConfig {
  const c = obj(v, "config");
  const run = c.config === undefined || c.config === null ? {} : obj(c.config, "config.config");
  const env: Record<string, string> = {};
  for (const kv of strings(run.Env, "config.Env")) {
    const eq = kv.indexOf("=");
    const k = eq < 0 ? kv : kv.slice(0, eq);
    if (!ENV_KEY.test(k)) bad(`config.Env holds an invalid variable name ${JSON.stringify(k)}`);
    env[k] = eq < 0 ? "" : kv.slice(eq + 1);
  }
  const workingDir = str(run.WorkingDir, "config.WorkingDir");
  if (workingDir && !workingDir.startsWith("/"))
    bad(`config.WorkingDir ${JSON.stringify(workingDir)} is not absolute`);
  const rootfs = c.rootfs === undefined ? {} : obj(c.rootfs, "config.rootfs");
  const diffIds = strings(rootfs.diff_ids, "config.rootfs.diff_ids");
  for (const d of diffIds) if (!DIGEST.test(d)) bad(`config.rootfs.diff_ids holds ${JSON.stringify(d)}`);
  return {
    image: {
      env,
      workingDir,
      user: str(run.User, "config.User"),
      entrypoint: strings(run.Entrypoint, "config.Entrypoint"),
      cmd: strings(run.Cmd, "config.Cmd"),
    },
    diffIds,
  };
}
