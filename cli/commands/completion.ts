/** `protoctl completion bash|zsh` and the hidden `protoctl __complete` behind them. */
import { Command } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { complete, formatCandidates, type NameKind } from "../completion/complete.js";
import { bashScript, zshScript } from "../completion/scripts.js";
import { examples, getApi } from "./common.js";

/** Object names from the controller with a short deadline; nothing on any failure. */
async function fetchNames(self: Command, kind: NameKind): Promise<string[]> {
  try {
    if (kind === "context") {
      const { loadCliConfig } = await import("../config/contexts.js");
      return Object.keys((await loadCliConfig()).contexts);
    }
    const api = await getApi(self);
    const opts = { deadlineMs: 1500 };
    switch (kind) {
      case "env":
        return (await api.unary("listEnvs", { node: "", group: "" }, opts)).envs.map(
          (e) => e.spec?.name ?? "",
        );
      case "base":
        return (await api.unary("listBases", {}, opts)).bases.map((b) => b.name);
      case "node":
        return (await api.unary("listNodes", {}, opts)).nodes.map((n) => n.name);
      case "layer":
        return (await api.unary("listLayers", {}, opts)).layers.map((l) => l.name);
      case "lab":
        return (await api.unary("listLabs", {}, opts)).labs.map((l) => l.name);
    }
  } catch {
    return [];
  }
}

export async function command(name: string): Promise<Command> {
  if (name === "__complete") {
    return new Command("__complete")
      .description("print completion candidates for the words after --")
      .argument("[words...]")
      .allowUnknownOption()
      .helpOption(false)
      .action(async (words: string[], _o: unknown, self: Command) => {
        const ctxAt = words.indexOf("--context");
        if (ctxAt >= 0 && words[ctxAt + 1] && ctxAt + 1 < words.length - 1)
          process.env.PROTOCTL_CONTEXT = words[ctxAt + 1];
        const { buildProgram } = await import("../program.js");
        // The full tree, minus the daemons (their modules are large and not for users).
        const root = await buildProgram([], "0", true);
        const cands = await complete(root, words.length ? words : [""], (k) => fetchNames(self, k));
        process.stdout.write(formatCandidates(cands));
      });
  }
  const cmd = new Command("completion")
    .description("print a shell completion script")
    .argument("<shell>", "bash or zsh")
    .action((shell: string) => {
      if (shell === "bash") process.stdout.write(bashScript());
      else if (shell === "zsh") process.stdout.write(zshScript());
      else {
        throw invalidArgument(`no completion for shell ${JSON.stringify(shell)}`, {
          reason: "INVALID_ARGUMENT",
          hint: "use `protoctl completion bash` or `protoctl completion zsh`",
        });
      }
    });
  return examples(cmd, "source <(protoctl completion bash)", "protoctl completion zsh > ~/.zfunc/_protoctl");
}
