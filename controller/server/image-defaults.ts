/**
 * An OCI image's run defaults become an env's command (issue 22 item 4):
 * when an env is created in command mode without a command, the sealed base
 * version it will use (the pinned one, else the latest) lends its image
 * config's Entrypoint + Cmd, WorkingDir, User and Env. They are written into
 * the env's spec, so they are desired state: every node runs the same, a
 * restart or a move keeps them, and `env describe` shows them.
 *
 * What a base's versions lend is read once per replica and kept: a read per
 * create was one more etcd request per env than the create itself. The
 * create carries what was read as guards (the mod revisions of the base's
 * record and of the version used), so a create after a seal, a delete or a
 * change of that version fails its guard instead of using a stale copy; the
 * caller then reads again (`fresh`) and retries.
 */
import { formatBaseRef } from "../../common/base-ref.js";
import { noSuchObject } from "../../common/names.js";
import type {
  Base as BaseRecord,
  BaseVersion,
  EnvCommand,
  EnvSpec,
  ImageConfig,
} from "../../proto/gen/protoctl/v1/types.js";
import type { Condition, Versioned } from "../store/kv.js";
import type { ClusterStore } from "../store/store.js";

/** The command an image config implies; undefined when it names no command. */
export function commandOfImage(image: ImageConfig | undefined): EnvCommand | undefined {
  const argv = [...(image?.entrypoint ?? []), ...(image?.cmd ?? [])];
  if (!image || argv.length === 0) return undefined;
  return { argv, workdir: image.workingDir, user: image.user, env: { ...image.env } };
}

/** What one read of a base found: its record and its versions (in version order). */
interface BaseRead {
  record: Versioned<BaseRecord> | undefined;
  versions: Versioned<BaseVersion>[];
}

/** Bases remembered per replica; past this many the memory starts over (names are user input). */
const MAX_BASES = 256;

/** Whether the base has a recorded version `want` (any version when 0). */
function holds(read: BaseRead, want: number): boolean {
  if (want) return read.versions.some((v) => v.value.version === want);
  return read.versions.length > 0 || Boolean(read.record?.value.latest);
}

export class ImageDefaults {
  private readonly bases = new Map<string, Promise<BaseRead>>();

  constructor(private readonly store: Pick<ClusterStore, "bases" | "listBaseVersions" | "keys">) {}

  /**
   * The spec with its base version's image defaults filled in (unchanged in boot mode or with a
   * command), and the guards the create must carry. `fresh` reads the base again first.
   */
  async apply(spec: EnvSpec, fresh = false): Promise<{ spec: EnvSpec; guards: Condition[] }> {
    const base = spec.base?.name;
    if (!base) return { spec, guards: [] };
    const want = spec.base?.version ?? 0;
    let read = await this.read(base, fresh);
    // a base (or version) the cluster has no record of can never be placed: the create would wait
    // Pending until its deadline; a remembered miss is read again first (it may be imported since)
    if (!holds(read, want) && !fresh) read = await this.read(base, true);
    if (!holds(read, want)) throw noSuchObject("base", want ? formatBaseRef(base, want) : base, base);
    if (spec.boot || (spec.command?.argv.length ?? 0) > 0) return { spec, guards: [] };
    const keys = this.store.keys;
    const guards: Condition[] = [];
    let bv: Versioned<BaseVersion> | undefined;
    if (want) {
      bv = read.versions.find((v) => v.value.version === want);
      guards.push({ key: keys.baseVersion(base, want), modRevision: bv?.modRevision ?? 0 });
    } else {
      // the latest: a seal bumps the record's `latest`; a delete of that version changes its key
      bv = read.versions.at(-1);
      guards.push({ key: keys.base(base), modRevision: read.record?.modRevision ?? 0 });
      if (bv) guards.push({ key: bv.key, modRevision: bv.modRevision });
    }
    const command = commandOfImage(bv?.value.image);
    return { spec: command ? { ...spec, command } : spec, guards };
  }

  private read(base: string, fresh: boolean): Promise<BaseRead> {
    const cur = this.bases.get(base);
    if (cur && !fresh) return cur;
    if (this.bases.size >= MAX_BASES) this.bases.clear();
    const p = Promise.all([this.store.bases.get(base), this.store.listBaseVersions(base)]).then(
      ([record, versions]) => ({ record, versions }),
    );
    this.bases.set(base, p);
    // a failed read is not remembered
    p.catch(() => {
      if (this.bases.get(base) === p) this.bases.delete(base);
    });
    return p;
  }
}
