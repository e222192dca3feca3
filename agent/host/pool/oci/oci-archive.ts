/**
 * `base import --oci-archive`: an image archive (the OCI image layout as
 * `skopeo copy … oci-archive:` and `podman save --format oci-archive` write
 * it, index.json + blobs/sha256; or `docker save`'s manifest.json layout)
 * flattened into a root being staged.
 *
 * The archive's files are first copied out into a work directory (next to
 * the staged root, removed with it), hashing each on the way. Every document
 * and layer used is checked against the digest that names it (index →
 * manifest → config and layers; docker save: the config by its file name),
 * and each layer's uncompressed stream against the config's diff id. Layers
 * are gzip, zstd (through the `zstd` tool) or plain tar, told by their first
 * bytes, not by the media type the archive claims.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { PassThrough, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract } from "tar-stream";
import { spawnDirect } from "../../../../common/exec.js";
import type { ImageConfig } from "../../../../proto/gen/protoctl/v1/types.js";
import type { ProgressFn } from "../../interfaces.js";
import {
  bad,
  type Descriptor,
  isIndex,
  parseConfig,
  parseDockerManifest,
  parseJson,
  parseManifest,
  pickManifest,
} from "./image-config.js";
import { entryParts, LayerApplier } from "./layer-apply.js";

/** A JSON document larger than this is refused (real ones are a few KiB). */
const MAX_JSON = 4 << 20;
/** Symlinks in the archive (old docker save dedups layers that way) followed at most this deep. */
const MAX_HOPS = 8;

interface Stored {
  file: string;
  sha256: string;
  size: number;
}

/** The archive's regular files by path, and its symlinks (path → target path, resolved inside it). */
class ArchiveFiles {
  readonly files = new Map<string, Stored>();
  readonly links = new Map<string, string>();

  get(path: string): Stored | undefined {
    let p = posix.normalize(path).replace(/^(\.\/)+/, "");
    for (let i = 0; i < MAX_HOPS; i++) {
      const f = this.files.get(p);
      if (f) return f;
      const next = this.links.get(p);
      if (!next) return undefined;
      p = next;
    }
    return undefined;
  }

  /** The blob a descriptor names, checked against its digest and size. */
  blob(d: Descriptor, what: string): Stored {
    const hex = d.digest.slice("sha256:".length);
    const f = this.get(`blobs/sha256/${hex}`);
    if (!f) bad(`${what} ${d.digest} is not in the archive`);
    if (f.sha256 !== hex) bad(`${what} blobs/sha256/${hex} does not match its digest (sha256:${f.sha256})`);
    if (d.size >= 0 && d.size !== f.size) bad(`${what} ${d.digest} is ${f.size} bytes, not ${d.size}`);
    return f;
  }

  async json(f: Stored, what: string): Promise<unknown> {
    if (f.size > MAX_JSON) bad(`${what} is larger than ${MAX_JSON} bytes`);
    return parseJson(await readFile(f.file, "utf8"), what);
  }
}

/** Copies the archive's files out into `work`, hashed; refuses entries with absolute or `..` names. */
async function unpack(archive: string, work: string, signal?: AbortSignal): Promise<ArchiveFiles> {
  const out = new ArchiveFiles();
  const ex = extract();
  const src = createReadStream(archive, { signal });
  src.on("error", (err) => ex.destroy(err));
  src.pipe(ex);
  let n = 0;
  try {
    for await (const entry of ex) {
      const h = entry.header;
      const path = entryParts(h.name, "archive entry").join("/");
      if (h.type === "symlink" || h.type === "link") {
        const target = h.type === "link" ? h.linkname : posix.join(posix.dirname(path), h.linkname ?? "");
        out.links.set(path, entryParts(posix.normalize(target ?? ""), "archive link").join("/"));
      } else if (h.type === "file" || h.type === "contiguous-file") {
        const file = join(work, `f${n++}`);
        const hash = createHash("sha256");
        let size = 0;
        const tap = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            hash.update(chunk);
            size += chunk.length;
            cb(null, chunk);
          },
        });
        await pipeline(entry as unknown as Readable, tap, createWriteStream(file, { mode: 0o600 }));
        out.files.set(path, { file, sha256: hash.digest("hex"), size });
        continue;
      }
      entry.resume();
    }
  } finally {
    src.unpipe(ex);
    src.destroy();
  }
  return out;
}

interface Plan {
  image: ImageConfig;
  /** Layers bottom first; `digest` is the archived (compressed) blob's when known. */
  layers: Array<{ file: Stored; diffId?: string; name: string }>;
  /** What names the image: the manifest's digest (OCI) or the config's (docker save). */
  digest: string;
}

/** index.json → (nested index →) manifest → config and layers, every step digest-checked. */
async function planOci(files: ArchiveFiles): Promise<Plan> {
  let d = pickManifest(await files.json(files.get("index.json")!, "index.json"));
  for (let depth = 0; isIndex(d); depth++) {
    if (depth > 2) bad("image indexes nest too deep");
    d = pickManifest(await files.json(files.blob(d, "index"), `index ${d.digest}`));
  }
  const m = parseManifest(await files.json(files.blob(d, "manifest"), `manifest ${d.digest}`));
  const cfg = parseConfig(await files.json(files.blob(m.config, "config"), "the image config"));
  checkDiffIds(cfg.diffIds, m.layers.length);
  return {
    image: cfg.image,
    digest: d.digest,
    layers: m.layers.map((l, i) => ({
      file: files.blob(l, `layer ${i + 1}`),
      diffId: cfg.diffIds[i],
      name: l.digest,
    })),
  };
}

/** docker save: manifest.json names the config and the layer files by path. */
async function planDocker(files: ArchiveFiles): Promise<Plan> {
  const m = parseDockerManifest(await files.json(files.get("manifest.json")!, "manifest.json"));
  const cf = files.get(m.config);
  if (!cf) bad(`the config ${m.config} is not in the archive`);
  // the config's file is named after its digest (hex.json, or blobs/sha256/hex)
  const named = /([0-9a-f]{64})(\.json)?$/.exec(m.config)?.[1];
  if (!named || named !== cf.sha256)
    bad(`the config ${m.config} does not match its digest (sha256:${cf.sha256})`);
  const cfg = parseConfig(await files.json(cf, "the image config"));
  checkDiffIds(cfg.diffIds, m.layers.length);
  if (cfg.diffIds.length !== m.layers.length) bad("the config's rootfs.diff_ids do not match the layers");
  const layers = m.layers.map((p, i) => {
    const f = files.get(p);
    if (!f) bad(`layer ${p} is not in the archive`);
    const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(posix.normalize(p))?.[1];
    if (blob && blob !== f.sha256) bad(`layer ${p} does not match its digest (sha256:${f.sha256})`);
    return { file: f, diffId: cfg.diffIds[i], name: p };
  });
  return { image: cfg.image, digest: `sha256:${cf.sha256}`, layers };
}

function checkDiffIds(diffIds: string[], layers: number): void {
  if (diffIds.length !== 0 && diffIds.length !== layers)
    bad(`the config lists ${diffIds.length} diff ids for ${layers} layers`);
}

/** The layer's bytes as an uncompressed tar stream (gzip in-process, zstd through the `zstd` tool). */
async function decompressed(
  file: string,
  signal?: AbortSignal,
): Promise<{ tar: Readable; done: Promise<void> }> {
  const head = Buffer.alloc(4);
  const fh = await open(file, "r");
  await fh.read(head, 0, 4, 0).finally(() => fh.close());
  const src = createReadStream(file, { signal });
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = createGunzip();
    src.on("error", (err) => gunzip.destroy(err));
    return { tar: src.pipe(gunzip), done: Promise.resolve() };
  }
  if (head.readUInt32LE(0) === 0xfd2fb528) {
    const child = spawnDirect("zstd", ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "ignore"], signal });
    const out = new PassThrough();
    const done = new Promise<void>((res, rej) => {
      child.on("error", rej);
      child.on("close", (code) =>
        code === 0 ? res() : rej(bad(`a zstd layer did not decompress (exit ${code})`)),
      );
    });
    done.catch((err) => out.destroy(err));
    src.on("error", (err) => child.kill() && out.destroy(err));
    child.stdin!.on("error", () => undefined); // EPIPE when the reader stops early: reported by close
    src.pipe(child.stdin!);
    child.stdout!.pipe(out);
    out.on("close", () => child.exitCode === null && child.kill());
    return { tar: out, done };
  }
  return { tar: src, done: Promise.resolve() };
}

/**
 * Flattens the image in `archive` into `root` (a fresh subvolume), using
 * `work` for the archive's files. Returns the image's run defaults and digest.
 */
export async function importOciArchive(
  archive: string,
  root: string,
  work: string,
  progress?: ProgressFn,
  signal?: AbortSignal,
): Promise<{ image: ImageConfig; digest: string }> {
  progress?.({ step: "unpack", message: `reading ${archive}` });
  const files = await unpack(archive, work, signal);
  let plan: Plan;
  if (files.get("index.json")) plan = await planOci(files);
  else if (files.get("manifest.json")) plan = await planDocker(files);
  else bad("no index.json (OCI layout) or manifest.json (docker save) in the archive");
  const applier = new LayerApplier(root);
  for (const [i, l] of plan.layers.entries()) {
    signal?.throwIfAborted();
    progress?.({
      step: "layer",
      message: `layer ${i + 1}/${plan.layers.length} ${l.name}`,
      fraction: i / plan.layers.length,
    });
    const { tar, done } = await decompressed(l.file.file, signal);
    const hash = createHash("sha256");
    const tap = new PassThrough();
    tap.on("data", (c: Buffer) => hash.update(c));
    tar.on("error", (err) => tap.destroy(err));
    tar.pipe(tap);
    // read to the end even past the tar's end-of-archive blocks, so the diff id covers every byte
    await applier.apply(tap);
    await new Promise<void>((res, rej) => {
      if (tap.readableEnded) return res();
      tap.on("end", res).on("error", rej).resume();
    });
    await done;
    const got = `sha256:${hash.digest("hex")}`;
    if (l.diffId && got !== l.diffId)
      bad(`layer ${i + 1} (${l.name}) uncompressed is ${got}, the config says ${l.diffId}`);
  }
  await applier.finish();
  const s = applier.stats;
  progress?.({
    step: "layer",
    message: `${plan.layers.length} layers: ${s.entries} entries, ${s.whiteouts} whiteouts${s.skipped ? `, ${s.skipped} devices/fifos skipped` : ""}`,
    fraction: 1,
  });
  return { image: plan.image, digest: plan.digest };
}
