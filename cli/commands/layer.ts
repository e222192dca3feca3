/** `protoctl layer ...`: configurations built from recipes on top of bases. */
import { Command, Option } from "commander";
import { internal, invalidArgument } from "../../common/errors.js";
import { type RecipeFile, RecipeKind } from "../../proto/gen/protoctl/v1/types.js";
import { layerList } from "../output/columns.js";
import { consumeOperation, withProgress } from "../output/progress.js";
import { collect, describeCommand, examples, getApi, listCommand, name, say, versionRef } from "./common.js";

/** `--file LOCAL[:PATH]`: a file shipped with the recipe, at PATH (relative; default: its base name). */
export async function recipeFile(spec: string): Promise<RecipeFile> {
  const { readFile, stat } = await import("node:fs/promises");
  const { basename } = await import("node:path");
  const colon = spec.indexOf(":");
  const local = colon >= 0 ? spec.slice(0, colon) : spec;
  const path = colon >= 0 ? spec.slice(colon + 1) : basename(spec);
  if (!path || path.startsWith("/") || path.split("/").some((p) => p === ".." || p === "")) {
    throw invalidArgument(`invalid recipe file path ${JSON.stringify(path)}`, {
      reason: "INVALID_PATH",
      hint: "write --file LOCAL[:RELATIVE/PATH] without '..' or a leading '/'",
    });
  }
  try {
    const [content, st] = await Promise.all([readFile(local), stat(local)]);
    return { path, content, mode: st.mode & 0o7777 };
  } catch (err) {
    throw invalidArgument(`cannot read ${local}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      reason: "FILE_UNREADABLE",
    });
  }
}

export function command(_name: string): Command {
  const cmd = new Command("layer").description("manage layers: configurations built from recipes on bases");

  examples(
    cmd
      .command("add")
      .argument("<name>", "layer name")
      .description(
        "add (or replace) a layer recipe; it is built on a base when first used or with --build-on",
      )
      .addOption(
        new Option("--script <file>", "shell script run inside the env as root").conflicts("playbook"),
      )
      .addOption(new Option("--playbook <file>", "Ansible playbook run against the env").conflicts("script"))
      .option("--file <local[:path]>", "extra file for the recipe (repeatable)", collect, [])
      .option("--parent <layer>", "layer this one stacks on (repeatable, bottom first)", collect, [])
      .option("--build-on <base[@N]>", "build now on this base version (repeatable)", collect, []),
    "protoctl layer add tools --script install-tools.sh --build-on debian",
    "protoctl layer add web --playbook site.yml --file nginx.conf:files/nginx.conf",
  ).action(
    async (
      n: string,
      opts: { script?: string; playbook?: string; file: string[]; parent: string[]; buildOn: string[] },
      self: Command,
    ) => {
      name("layer", n);
      for (const p of opts.parent) name("layer", p);
      const buildOn = opts.buildOn.map((b) => versionRef("base", b));
      if (!opts.script && !opts.playbook) {
        throw invalidArgument("layer add needs --script or --playbook", {
          reason: "INVALID_FLAG",
          hint: "e.g. `protoctl layer add tools --script install.sh`",
        });
      }
      const { readFile } = await import("node:fs/promises");
      const mainFile = (opts.script ?? opts.playbook)!;
      let main: Buffer;
      try {
        main = await readFile(mainFile);
      } catch (err) {
        throw invalidArgument(
          `cannot read ${mainFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
          {
            reason: "FILE_UNREADABLE",
          },
        );
      }
      const files = await Promise.all(opts.file.map(recipeFile));
      const layer = {
        name: n,
        recipe: {
          kind: opts.script ? RecipeKind.RECIPE_KIND_SHELL : RecipeKind.RECIPE_KIND_ANSIBLE,
          main,
          files,
        },
        parents: opts.parent,
      };
      const api = await getApi(self);
      const title = buildOn.length ? `Building layer ${n}` : `Adding layer ${n}`;
      const built = await withProgress(title, async (sink) => {
        const result = await consumeOperation(
          api.stream((c, o) => c.addLayer({ layer, buildOn }, o)),
          sink,
        );
        if (buildOn.length && result && result.result?.$case !== "layerBuild") {
          throw internal("the controller ended the build without a result", { reason: "NO_RESULT" });
        }
        const b = result?.result?.$case === "layerBuild" ? result.result.layerBuild : undefined;
        const on = b?.base ? ` built on ${b.base}` : " added";
        return { value: b, done: `layer ${n}${on}` };
      });
      say(built?.base ? `layer/${n} built on ${built.base}` : `layer/${n} added`);
    },
  );

  listCommand(
    cmd,
    "list layers",
    "protoctl layer ls",
    layerList,
    async (api) => (await api.unary("listLayers", {}, { deadlineMs: 15_000 })).layers,
  );

  describeCommand(
    cmd,
    "layer",
    "<name>",
    "show a layer and its builds",
    "protoctl layer describe tools",
    async (api, n) => {
      const { Layer } = await import("../../proto/gen/protoctl/v1/types.js");
      return Layer.toJSON(await api.unary("getLayer", { name: n }, { deadlineMs: 15_000 }));
    },
  );

  examples(
    cmd
      .command("rm")
      .alias("delete")
      .argument("<name>")
      .description("delete a layer (refused while envs use it)"),
    "protoctl layer rm tools",
  ).action(async (n: string, _o: unknown, self: Command) => {
    name("layer", n);
    const api = await getApi(self);
    await api.unary("deleteLayer", { name: n });
    say(`layer/${n} deleted`);
  });

  return examples(cmd, "protoctl layer add tools --script install.sh", "protoctl layer ls");
}
