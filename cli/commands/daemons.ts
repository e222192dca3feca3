/**
 * `protoctl agent` and `protoctl controller`: the daemons live in agent/ and
 * controller/ and define their own commands; the CLI only loads them when
 * asked, so user commands never pay for them.
 */
import type { Command } from "commander";
import { internal } from "../../common/errors.js";

interface DaemonModule {
  agentCommand?: () => Command;
  controllerCommand?: () => Command;
}

/** Imports a daemon module; a missing module becomes a clear error instead of a stack. */
export async function loadDaemon(which: "agent" | "controller"): Promise<DaemonModule> {
  // A computed specifier: the module may not exist in every build.
  const spec = `../../${which}/main.js`;
  try {
    return (await import(spec)) as DaemonModule;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ERR_MODULE_NOT_FOUND" && String(e.message).includes(`${which}/main.`)) {
      throw internal(`the ${which} is not part of this protoctl build (${which}/main.js is missing)`, {
        reason: "COMPONENT_MISSING",
        hint: "build the whole project with `npm run build`, or install a complete protoctl",
      });
    }
    throw err;
  }
}

export async function command(name: string): Promise<Command> {
  if (name === "agent") {
    const mod = await loadDaemon("agent");
    if (!mod.agentCommand)
      throw internal("agent/main.js does not export agentCommand()", { reason: "COMPONENT_BROKEN" });
    return mod.agentCommand();
  }
  const mod = await loadDaemon("controller");
  if (!mod.controllerCommand) {
    throw internal("controller/main.js does not export controllerCommand()", { reason: "COMPONENT_BROKEN" });
  }
  return mod.controllerCommand();
}
