/**
 * Layers: a recipe (shell script, or Ansible playbook, with files) run inside
 * nspawn over an overlayfs whose lowers are the base version and the parent
 * layers' uppers, so the upper is exactly the recipe's diff. A build is keyed
 * by (base@N, recipe digest incl. the parents' digests) and cached; a new base
 * version gets its own build, whose recipe always runs on that version (the
 * partial-upgrade fix). Builds are staged under `@overlay/.tmp-*` and
 * renamed into place; a failed recipe leaves nothing and returns its output.
 *
 * Rebase (issue 17 item 6): an Ansible layer without parents, built before
 * on an earlier version base@N of the same base (same digest), starts on
 * base@M from a snapshot of that build's upper instead of an empty one when
 * layer-rebase.ts proves the base's changes N->M do not meet the upper
 * (rebase-rule.ts); the playbook then runs again on it (idempotent by
 * Ansible's contract: tasks report ok, and tasks reading base files see
 * base@M). The saving is the install itself (dpkg, downloads), which the
 * package cache alone cannot skip. A conflict, no earlier build, a shell
 * recipe (not idempotent in general), parents (their uppers on base@M may
 * differ from base@N's, which the base diff does not cover), an external
 * base, or a playbook failing on the rebased tree (retried from scratch)
 * build from scratch. The build's meta says which: `from`.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, join, normalize } from "node:path";
import { baseRefOf, parseBaseRef } from "../../../common/base-ref.js";
import { failedPrecondition, invalidArgument, notFound, ProtoctlError } from "../../../common/errors.js";
import type { KeyedLock } from "../../../common/keyed-lock.js";
import type { Logger } from "../../../common/logger.js";
import { validateName } from "../../../common/names.js";
import { Revert } from "../../../common/revert.js";
import { lstatInRoot, writeFileInRoot } from "../../../common/root-path.js";
import type { BaseVersionMeta, LayerBuildMeta, ProgressFn } from "../interfaces.js";
import { PYTHON_BOOTSTRAP_HINT, runAnsible, usesRawTasks } from "./ansible.js";
import { type BaseStore, sha256 } from "./bases.js";
import { asPoolError, createSubvolume, diskUsage, setReadonly, snapshotSubvolume } from "./btrfs.js";
import { exists, listDir, readJson, removeObjectDir, writeJsonAtomic } from "./files.js";
import { decideRebase } from "./layer-rebase.js";
import { type PoolLayout, parseLayerBuildDirName, TMP_PREFIX, tmpName } from "./layout.js";
import { mountOverlay, unmount } from "./mounts.js";
import { runInRoot, withoutNspawnTraces } from "./nspawn.js";
import type { PackageCache } from "./package-cache.js";

export interface LayerSpec {
  name: string;
  kind: "shell" | "ansible";
  main: Uint8Array;
  files: Array<{ path: string; content: Uint8Array; mode: number }>;
  parents: string[];
}

/** What `@overlay/LAYER/recipe.json` holds: the current recipe, bytes in base64. */
interface StoredRecipe {
  name: string;
  kind: "shell" | "ansible";
  main: string;
  files: Array<{ path: string; content: string; mode: number }>;
  parents: string[];
  /** sha256 over this recipe and its parents' digests, in order. */
  digest: string;
}

export class LayerStore {
  constructor(
    private readonly layout: PoolLayout,
    private readonly bases: BaseStore,
    private readonly locks: KeyedLock,
    private readonly log: Logger,
    private readonly packageCache?: PackageCache,
  ) {}

  async build(
    spec: LayerSpec,
    base: string,
    version: number,
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<LayerBuildMeta> {
    const recipe = await this.recipeFromSpec(spec);
    const { meta } = await this.bases.rootOf(base, version);
    const built = await this.ensureBuilt(recipe, meta, progress, signal);
    await writeJsonAtomic(this.layout.layerRecipe(recipe.name), recipe);
    return built;
  }

  /**
   * Upper dirs (top first) of the stack that `layers` needs on base@N: each
   * layer after its parents, each once, built from its stored recipe when
   * this base version has no build of it yet.
   */
  async resolveStack(base: string, version: number, layers: string[]): Promise<string[]> {
    const { meta } = await this.bases.rootOf(base, version);
    const order: StoredRecipe[] = [];
    const seen = new Set<string>();
    const visit = async (name: string, path: string[]): Promise<void> => {
      if (path.includes(name))
        throw invalidArgument(`layer parents form a cycle: ${[...path, name].join(" -> ")}`);
      if (seen.has(name)) return;
      const r = await this.recipe(name);
      for (const p of r.parents) await visit(p, [...path, name]);
      seen.add(name);
      order.push(r);
    };
    for (const l of layers) await visit(validateName("layer", l), []);
    const uppers: string[] = [];
    for (const r of order) {
      const b = await this.ensureBuilt(r, meta);
      uppers.push(join(this.buildDirOf(b), "vol/upper"));
    }
    return uppers.reverse();
  }

  async listBuilds(): Promise<LayerBuildMeta[]> {
    const out: LayerBuildMeta[] = [];
    for (const layer of await listDir(this.layout.overlay)) {
      if (layer.startsWith(TMP_PREFIX)) continue;
      for (const entry of await listDir(this.layout.layerDir(layer))) {
        if (!parseLayerBuildDirName(entry)) continue;
        const m = await readJson<LayerBuildMeta>(join(this.layout.layerDir(layer), entry, "meta.json"));
        if (m) out.push(m);
      }
    }
    return out.sort((a, b) => a.layer.localeCompare(b.layer) || a.builtMs - b.builtMs);
  }

  buildDirOf(m: LayerBuildMeta): string {
    const { base, version } = parseBaseRef(m.base);
    return this.layout.layerBuildDir(m.layer, base, version, m.digest);
  }

  /** Deletes a layer's builds (on one base, "NAME" or "NAME@N", when given) or the whole layer. */
  async delete(name: string, base?: string): Promise<void> {
    validateName("layer", name);
    const dir = this.layout.layerDir(name);
    if (!(await exists(dir))) {
      throw notFound(`layer ${name} not found`, { reason: "LAYER_NOT_FOUND", subject: `layer/${name}` });
    }
    const builds = (await this.listBuilds()).filter((b) => b.layer === name);
    const doomed =
      base === undefined ? builds : builds.filter((b) => b.base === base || b.base.startsWith(`${base}@`));
    for (const b of doomed) {
      const tmp = join(this.layout.overlay, tmpName());
      await rename(this.buildDirOf(b), tmp);
      await removeObjectDir(tmp);
    }
    if (base === undefined) {
      const tmp = join(this.layout.overlay, tmpName());
      await rename(dir, tmp);
      await removeObjectDir(tmp);
    }
  }

  /** Removes half-written build dirs left inside layer dirs. */
  async cleanTemps(): Promise<string[]> {
    const removed: string[] = [];
    for (const layer of await listDir(this.layout.overlay)) {
      if (layer.startsWith(TMP_PREFIX)) continue;
      for (const entry of await listDir(this.layout.layerDir(layer))) {
        if (entry === "recipe.json" || parseLayerBuildDirName(entry)) continue;
        await removeObjectDir(join(this.layout.layerDir(layer), entry));
        removed.push(`@overlay/${layer}/${entry}`);
      }
    }
    return removed;
  }

  private async recipe(name: string): Promise<StoredRecipe> {
    const r = await readJson<StoredRecipe>(this.layout.layerRecipe(validateName("layer", name)));
    if (!r) {
      throw notFound(`layer ${name} not found`, {
        reason: "LAYER_NOT_FOUND",
        subject: `layer/${name}`,
        hint: "add it first (protoctl layer add NAME --script F | --playbook F)",
      });
    }
    return r;
  }

  private async recipeFromSpec(spec: LayerSpec): Promise<StoredRecipe> {
    validateName("layer", spec.name);
    if (spec.kind !== "shell" && spec.kind !== "ansible") {
      throw invalidArgument(`unknown layer kind ${JSON.stringify(spec.kind)}`, {
        reason: "INVALID_LAYER_KIND",
      });
    }
    const files = spec.files.map((f) => ({ ...f, path: safeRelativePath(f.path) }));
    const parentDigests: string[] = [];
    for (const p of spec.parents) {
      if (validateName("layer", p) === spec.name)
        throw invalidArgument(`layer ${p} cannot be its own parent`);
      parentDigests.push((await this.recipe(p)).digest);
    }
    const sorted = [...files].sort((a, b) => a.path.localeCompare(b.path));
    const digest = sha256(
      spec.kind,
      spec.main,
      ...sorted.flatMap((f) => [f.path, String(f.mode & 0o7777), f.content]),
      "parents",
      ...parentDigests,
    );
    return {
      name: spec.name,
      kind: spec.kind,
      main: Buffer.from(spec.main).toString("base64"),
      files: sorted.map((f) => ({
        path: f.path,
        content: Buffer.from(f.content).toString("base64"),
        mode: f.mode,
      })),
      parents: [...spec.parents],
      digest,
    };
  }

  /** The build of `recipe` on base@N: the cached one, or a new one (parents resolved first). */
  private async ensureBuilt(
    recipe: StoredRecipe,
    base: BaseVersionMeta,
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<LayerBuildMeta> {
    const dir = this.layout.layerBuildDir(recipe.name, base.base, base.version, recipe.digest);
    const cached = await readJson<LayerBuildMeta>(join(dir, "meta.json"));
    if (cached) return cached;
    const lowers = recipe.parents.length
      ? await this.resolveStack(base.base, base.version, recipe.parents)
      : [];
    return this.locks.run(`layer/${dir}`, async () => {
      const again = await readJson<LayerBuildMeta>(join(dir, "meta.json"));
      if (again) return again;
      const from = await this.rebaseSource(recipe, base, progress);
      if (!from) return this.runBuild(recipe, base, lowers, dir, progress, signal);
      try {
        return await this.runBuild(recipe, base, lowers, dir, progress, signal, from);
      } catch (err) {
        if (!(err instanceof ProtoctlError) || err.reason !== "RECIPE_FAILED") throw err;
        progress?.({
          step: "prepare",
          message: "the playbook failed on the rebased tree; building from scratch",
        });
        return this.runBuild(recipe, base, lowers, dir, progress, signal);
      }
    });
  }

  /** The earlier build this one may start from (see the header), or undefined: from scratch. */
  private async rebaseSource(
    recipe: StoredRecipe,
    base: BaseVersionMeta,
    progress?: ProgressFn,
  ): Promise<{ vol: string; ref: string } | undefined> {
    if (recipe.kind !== "ansible" || recipe.parents.length > 0) return undefined;
    if (this.bases.externals.get(base.base, base.version)) return undefined;
    const earlier = (await this.listBuilds())
      .filter((b) => b.layer === recipe.name && b.digest === recipe.digest)
      .map((b) => ({ b, ref: parseBaseRef(b.base) }))
      .filter(({ ref }) => ref.base === base.base && ref.version < base.version)
      .filter(({ ref }) => !this.bases.externals.get(ref.base, ref.version))
      .sort((x, y) => y.ref.version - x.ref.version);
    for (const { b, ref } of earlier) {
      const oldBaseRoot = this.layout.baseVersionRoot(ref.base, ref.version);
      if (!(await exists(oldBaseRoot))) continue; // that version was deleted: try an older one
      const vol = join(this.buildDirOf(b), "vol");
      const decision = await decideRebase({
        oldBaseRoot,
        newBaseRoot: this.layout.baseVersionRoot(base.base, base.version),
        oldUpper: join(vol, "upper"),
        scratch: join(this.layout.workdir, tmpName()),
      }).catch((err: unknown) => ({ rebase: false as const, why: (err as Error).message }));
      if (decision.rebase) {
        progress?.({ step: "prepare", message: `rebasing the build on ${b.base}` });
        this.log.info({ layer: recipe.name, from: b.base, to: baseRefOf(base) }, "layer rebase");
        return { vol, ref: b.base };
      }
      progress?.({ step: "prepare", message: `no rebase from ${b.base}: ${decision.why}` });
      this.log.info({ layer: recipe.name, from: b.base, why: decision.why }, "layer built from scratch");
      return undefined;
    }
    return undefined;
  }

  private runBuild(
    recipe: StoredRecipe,
    base: BaseVersionMeta,
    lowers: string[],
    finalDir: string,
    progress?: ProgressFn,
    signal?: AbortSignal,
    from?: { vol: string; ref: string },
  ): Promise<LayerBuildMeta> {
    const what = `layer ${recipe.name} on ${baseRefOf(base)}`;
    return Revert.run(async (r) => {
      progress?.({ step: "prepare", message: `building ${what}` });
      const tmp = join(this.layout.overlay, tmpName());
      await mkdir(tmp);
      r.add(() => removeObjectDir(tmp));
      const vol = join(tmp, "vol");
      // a rebase starts from a writable snapshot of the earlier build (shares its extents)
      if (from) await snapshotSubvolume(from.vol, vol);
      else {
        await createSubvolume(vol);
        await mkdir(join(vol, "upper"));
      }
      await mkdir(join(vol, "work"));
      const merged = join(this.layout.workdir, tmpName());
      await mkdir(merged);
      r.add(() => rm(merged, { recursive: true, force: true }));
      const baseRoot =
        this.bases.externals.get(base.base, base.version)?.root ??
        this.layout.baseVersionRoot(base.base, base.version);
      await mountOverlay(merged, [...lowers, baseRoot], join(vol, "upper"), join(vol, "work"));
      r.add(() => unmount(merged));

      // The recipe and its files go into a temp dir inside the merged root and leave the upper after the run.
      const stageName = `.protoctl-recipe-${randomBytes(5).toString("hex")}`;
      const stage = join(merged, stageName);
      await mkdir(stage, { mode: 0o700 });
      for (const f of recipe.files) {
        await writeFileInRoot(stage, f.path, Buffer.from(f.content, "base64"), f.mode & 0o7777 || 0o644);
      }
      const mainName = recipe.kind === "shell" ? "recipe.sh" : "playbook.yml";
      await writeFileInRoot(stage, mainName, Buffer.from(recipe.main, "base64"), 0o644);

      // the node's package cache: this build's own copy, merged back once the recipe ran
      const cache = await this.packageCache?.checkout(merged);
      if (cache) r.add(() => cache.release());
      const binds = cache?.binds ?? [];
      let result: { exitCode: number; output: string; noSpace: boolean };
      if (recipe.kind === "shell") {
        progress?.({ step: "recipe", message: "running the shell recipe" });
        result = await runInRoot(
          merged,
          ["/bin/sh", "-c", `cd /${stageName} && exec /bin/sh ./${mainName}`],
          {
            network: true,
            env: { DEBIAN_FRONTEND: "noninteractive" },
            binds,
            step: "recipe",
            progress,
            signal,
          },
        );
      } else {
        // without python3, only a playbook that bootstraps it with `raw` can run (ansible.ts)
        const playbook = Buffer.from(recipe.main, "base64").toString("utf8");
        const python = await python3Of(merged);
        if (!usesRawTasks(playbook) && !python) {
          throw failedPrecondition(`base ${baseRefOf(base)} has no python3; Ansible layers need it`, {
            reason: "BASE_NO_PYTHON",
            subject: `layer/${recipe.name}`,
            hint: PYTHON_BOOTSTRAP_HINT,
          });
        }
        progress?.({ step: "recipe", message: "running the Ansible playbook" });
        result = await withoutNspawnTraces(merged, () =>
          // a path checked in the tree is no input to Ansible's parser: plain "/usr/bin/python3"-like text
          runAnsible(merged, stageName, mainName, { binds, progress, signal, interpreter: python }),
        );
      }
      await rm(stage, { recursive: true, force: true });
      await cache?.release();
      if (result.exitCode !== 0) {
        if (result.noSpace)
          throw asPoolError(Object.assign(new Error(result.output), { code: "ENOSPC" }), what);
        throw failedPrecondition(`recipe of ${what} failed (exit ${result.exitCode})`, {
          reason: "RECIPE_FAILED",
          subject: `layer/${recipe.name}`,
          output: result.output,
          hint: "nothing was recorded; fix the recipe and add it again",
        });
      }
      await unmount(merged);
      await rm(merged, { recursive: true, force: true });
      await rm(join(vol, "work"), { recursive: true, force: true });
      await setReadonly(vol, true);
      const [du] = await diskUsage([vol]);
      const meta: LayerBuildMeta = {
        layer: recipe.name,
        base: baseRefOf(base),
        digest: recipe.digest,
        parents: recipe.parents,
        kind: recipe.kind,
        builtMs: Date.now(),
        sizeBytes: du?.totalBytes ?? 0,
        from: from ? `rebased from ${from.ref}` : "scratch",
      };
      await writeJsonAtomic(join(tmp, "meta.json"), meta);
      await mkdir(dirname(finalDir), { recursive: true });
      await rename(tmp, finalDir);
      this.log.info({ layer: recipe.name, base: meta.base, sizeBytes: meta.sizeBytes }, "layer built");
      return meta;
    }).catch((err) => {
      throw err instanceof ProtoctlError ? err : asPoolError(err, `build ${what}`);
    });
  }
}

/** Recipe file paths stay inside the recipe dir: relative, no "..". */
function safeRelativePath(p: string): string {
  const n = normalize(p);
  if (!p || n.startsWith("/") || n === ".." || n.startsWith("../") || n === "." || /\0/.test(p)) {
    throw invalidArgument(`invalid recipe file path ${JSON.stringify(p)}`, { reason: "INVALID_FILE_PATH" });
  }
  return n;
}

/** The tree's python3 (absolute path inside it), or undefined. */
async function python3Of(root: string): Promise<string | undefined> {
  for (const p of ["usr/bin/python3", "bin/python3", "usr/local/bin/python3"]) {
    if (await lstatInRoot(root, p).catch(() => undefined)) return `/${p}`;
  }
  return undefined;
}
