/**
 * The argv shapes the fast entry (cli/main.ts) serves without commander:
 * `version [-o text|json]` and `env exec NAME -- COMMAND...` with no flags.
 * Anything else (another flag, `--context`, a name the naming rule refuses,
 * PROTOCTL_DEBUG) is left to the full CLI, which then gives its usual output
 * and errors: the fast path never has to reproduce a usage error.
 */

/** common/names.ts NAME_PATTERN (a unit test keeps them equal; importing it would load errors.ts). */
export const FAST_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export type FastPlan = { kind: "version"; json: boolean } | { kind: "exec"; env: string; command: string[] };

export function fastPlan(args: readonly string[], env: NodeJS.ProcessEnv): FastPlan | undefined {
  if (env.PROTOCTL_DEBUG === "1") return undefined;
  if (args[0] === "version") {
    if (args.length === 1) return { kind: "version", json: false };
    const output =
      args.length === 3 && (args[1] === "-o" || args[1] === "--output")
        ? args[2]
        : args.length === 2 && args[1]!.startsWith("--output=")
          ? args[1]!.slice("--output=".length)
          : undefined;
    if (output === "text" || output === "json") return { kind: "version", json: output === "json" };
    return undefined;
  }
  if (args[0] === "env" && args[1] === "exec" && args.length >= 5 && args[3] === "--") {
    const name = args[2]!;
    if (!FAST_NAME_PATTERN.test(name)) return undefined;
    return { kind: "exec", env: name, command: args.slice(4) };
  }
  return undefined;
}
