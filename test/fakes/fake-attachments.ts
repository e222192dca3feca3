/**
 * AttachmentDriver in memory: sources are URIs the test registers with what
 * they serve; an attach writes the served files below a directory standing
 * for the sprout's mount, a hydrate "copies" by comparing the source's
 * checksum with the seed's. It refuses what SeedAttachments refuses
 * (test/contracts/attachment-contract.ts holds both to the same behaviour).
 * Two instances sharing their records act as one host across an agent restart.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { validateKey } from "../../agent/host/attachments/attachment-entry.js";
import { requireRoom } from "../../agent/host/attachments/hydrate.js";
import type {
  AgentAttachments,
  AttachmentState,
  AttachOptions,
  HydrateOptions,
} from "../../agent/host/attachments/types.js";
import type { TlsFiles } from "../../agent/host/exports/types.js";
import {
  alreadyExists,
  Code,
  failedPrecondition,
  invalidArgument,
  notFound,
  ProtoctlError,
  unavailable,
} from "../../common/errors.js";

/** What a fake source serves: the image's checksum and the files of its subvolume. */
export interface FakeSource {
  checksum: string;
  subvolume: string;
  files: Record<string, string>;
}

interface Entry {
  opts: AttachOptions;
  state: AttachmentState;
  dir: string;
}

export class FakeAttachments implements AgentAttachments {
  /** URI → what answers there; a URI not here is a dead source. */
  readonly sources: Map<string, FakeSource>;
  /** Mounted attachments of this "host" (what an agent restart finds). */
  private readonly host: Map<string, Entry>;
  private readonly entries = new Map<string, Entry>();
  tls?: TlsFiles;
  warmed = false;

  /** `shared`: the instance of a previous agent process on the same host. */
  constructor(shared?: FakeAttachments) {
    this.sources = shared ? shared.sources : new Map();
    this.host = shared ? shared.host : new Map();
  }

  setTls(tls: TlsFiles | undefined): void {
    this.tls = tls ?? this.tls;
  }

  warm(): void {
    this.warmed = true;
  }

  async adopt(o: AttachOptions, s: AttachmentState): Promise<AttachmentState | undefined> {
    validateKey(o.key);
    const e = this.host.get(o.key);
    if (!e || e.state.mountpoint !== s.mountpoint) {
      await rm(join(o.stateDir, o.key), { recursive: true, force: true });
      return undefined;
    }
    this.entries.set(o.key, e);
    return { ...e.state };
  }

  get(key: string): AttachmentState | undefined {
    const e = this.entries.get(key);
    return e ? { ...e.state } : undefined;
  }

  list(): AttachmentState[] {
    return [...this.entries.values()].map((e) => ({ ...e.state }));
  }

  async attach(o: AttachOptions): Promise<AttachmentState> {
    validateKey(o.key);
    const existing = this.entries.get(o.key);
    if (existing) {
      if (existing.opts.uri === o.uri || existing.state.phase === "local") return { ...existing.state };
      throw alreadyExists(`seed ${o.key} is already attached from ${existing.opts.uri}`, {
        reason: "ALREADY_ATTACHED",
        subject: `attachment/${o.key}`,
      });
    }
    if (!(o.sproutBytes > 0)) throw invalidArgument("sproutBytes must be positive");
    await mkdir(o.stateDir, { recursive: true });
    await requireRoom(o.stateDir, o.reserveBytes ?? o.sproutBytes, `the sprout device of ${o.key}`);
    const src = this.sources.get(o.uri);
    if (!src) throw unavailable(`attaching ${o.key} from ${o.uri} failed: no answer`);
    if (src.subvolume !== o.seed.subvolume) {
      throw failedPrecondition(`the seed from ${o.uri} has no subvolume ${o.seed.subvolume}`, {
        reason: "SEED_CONTENT_MISMATCH",
        subject: `attachment/${o.key}`,
      });
    }
    const dir = join(o.stateDir, o.key);
    await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
      throw failedPrecondition(`${dir} exists: a previous attachment of ${o.key} was not cleaned`, {
        reason: "STALE_ATTACHMENT",
        subject: dir,
      });
    });
    const mountpoint = o.mountpoint ?? join(dir, "mnt");
    const subvolumePath = join(mountpoint, o.seed.subvolume);
    for (const [rel, text] of Object.entries(src.files)) {
      await mkdir(dirname(join(subvolumePath, rel)), { recursive: true });
      await writeFile(join(subvolumePath, rel), text);
    }
    // files standing for the loop devices, so an export can serve the seed one
    await writeFile(join(dir, "seed-loop"), "fake seed loop\n");
    await writeFile(join(dir, "sprout-loop"), "fake sprout loop\n");
    const state: AttachmentState = {
      key: o.key,
      phase: "attached",
      uri: o.uri,
      transport: "nbdfuse",
      mountpoint,
      subvolumePath,
      seedLoop: join(dir, "seed-loop"),
      sproutLoop: join(dir, "sprout-loop"),
      seedBacking: join(dir, "nbd-0", "image"),
      hydratedBytes: 0,
      sizeBytes: o.seed.sizeBytes,
      message: "",
    };
    const entry = { opts: { ...o }, state, dir };
    this.entries.set(o.key, entry);
    this.host.set(o.key, entry);
    return { ...state };
  }

  async hydrate(key: string, opts: HydrateOptions = {}): Promise<AttachmentState> {
    const e = this.mustGet(key);
    if (e.state.phase === "local") return { ...e.state };
    const src = this.sources.get(e.state.uri);
    if (!src) {
      e.state.message = `hydrating ${key} failed: ${e.state.uri} does not answer`;
      throw unavailable(e.state.message, { subject: `attachment/${key}` });
    }
    if (opts.signal?.aborted) throw new ProtoctlError(Code.CANCELLED, `hydrating ${key} was cancelled`);
    const size = e.state.sizeBytes;
    opts.progress?.(Math.floor(size / 2), size);
    if (src.checksum !== e.opts.seed.checksum) {
      e.state.message = `the seed copied from ${e.state.uri} does not match its checksum (${src.checksum})`;
      throw new ProtoctlError(Code.DATA_LOSS, e.state.message, {
        reason: "CHECKSUM_MISMATCH",
        subject: `attachment/${key}`,
      });
    }
    opts.progress?.(size, size);
    Object.assign(e.state, {
      phase: "local",
      transport: "local",
      uri: "",
      hydratedBytes: size,
      seedBacking: join(e.dir, "seed.img"),
      message: "",
    });
    return { ...e.state };
  }

  async switchSource(key: string, uri: string): Promise<AttachmentState> {
    const e = this.mustGet(key);
    if (e.state.phase === "local") return { ...e.state };
    if (!this.sources.has(uri)) {
      e.state.message = `switching ${key} to ${uri} failed: no answer`;
      throw unavailable(e.state.message, { subject: `attachment/${key}` });
    }
    e.opts = { ...e.opts, uri };
    Object.assign(e.state, { uri, phase: "attached", message: "" });
    return { ...e.state };
  }

  async detach(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e) return;
    await rm(e.dir, { recursive: true, force: true });
    if (e.opts.mountpoint) await rm(e.opts.mountpoint, { recursive: true, force: true });
    this.entries.delete(key);
    this.host.delete(key);
  }

  private mustGet(key: string): Entry {
    const e = this.entries.get(key);
    if (!e) {
      throw notFound(`no attachment ${key}`, {
        reason: "ATTACHMENT_NOT_FOUND",
        subject: `attachment/${key}`,
      });
    }
    return e;
  }
}
