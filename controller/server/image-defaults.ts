/**
 * An OCI image's run defaults become an env's command (issue 22 item 4):
 * when an env is created in command mode without a command, the sealed base
 * version it will use (the pinned one, else the latest) lends its image
 * config's Entrypoint + Cmd, WorkingDir, User and Env. They are written into
 * the env's spec, so they are desired state: every node runs the same, a
 * restart or a move keeps them, and `env describe` shows them.
 */
import type { EnvCommand, EnvSpec, ImageConfig } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";

/** The env command an image config implies; undefined when it names no command. */
export function commandOfImage(image: ImageConfig | undefined): EnvCommand | undefined {
  const argv = [...(image?.entrypoint ?? []), ...(image?.cmd ?? [])];
  if (!image || argv.length === 0) return undefined;
  return { argv, workdir: image.workingDir, user: image.user, env: { ...image.env } };
}

/** The spec with its base version's image defaults filled in (unchanged in boot mode or with a command). */
export async function withImageDefaults(ctx: ControllerContext, spec: EnvSpec): Promise<EnvSpec> {
  if (spec.boot || (spec.command?.argv.length ?? 0) > 0 || !spec.base?.name) return spec;
  const versions = await ctx.store.listBaseVersions(spec.base.name);
  const want = spec.base.version;
  const bv = (want ? versions.find((v) => v.value.version === want) : versions.at(-1))?.value;
  const command = commandOfImage(bv?.image);
  return command ? { ...spec, command } : spec;
}
