/**
 * The argv shapes the fast entry (cli/main.ts) serves without commander:
 * `version [-o text|json]`, `env exec NAME -- COMMAND...` with no flags,
 * `env create NAME --base BASE[@N]` with no other flag and `env rm NAME`
 * (one name): the cycle users type most.
 * Anything else (another flag, `--context`, a name the naming rule refuses,
 * PROTOCTL_DEBUG) is left to the full CLI, which then gives its usual output
 * and errors: the fast path never has to reproduce a usage error.
 */

/** common/names.ts NAME_PATTERN (a unit test keeps them equal; importing it would load errors.ts). */
export const FAST_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** common/names.ts parseVersionRef's version rule. */
const FAST_VERSION_PATTERN = /^[1-9][0-9]{0,8}$/;

export type FastPlan =
  | { kind: "version"; json: boolean }
  | { kind: "exec"; env: string; command: string[] }
  | { kind: "create"; env: string; base: string; version: number }
  | { kind: "rm"; env: string };

/** `NAME` or `NAME@N` as parseVersionRef reads it, or undefined for anything it would refuse. */
function baseRef(ref: string): { base: string; version: number } | undefined {
  const at = ref.lastIndexOf("@");
  const base = at < 0 ? ref : ref.slice(0, at);
  const v = at < 0 ? undefined : ref.slice(at + 1);
  if (!FAST_NAME_PATTERN.test(base) || (v !== undefined && !FAST_VERSION_PATTERN.test(v))) return undefined;
  return { base, version: v === undefined ? 0 : Number(v) };
}

function createPlan(args: readonly string[]): FastPlan | undefined {
  const name = args[2]!;
  let ref: string | undefined;
  if (args.length === 5 && args[3] === "--base") ref = args[4];
  else if (args.length === 4 && args[3]!.startsWith("--base=")) ref = args[3]!.slice("--base=".length);
  const b = ref === undefined ? undefined : baseRef(ref);
  if (!b || !FAST_NAME_PATTERN.test(name)) return undefined;
  return { kind: "create", env: name, ...b };
}

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
  if (args[0] === "env" && args[1] === "create" && args.length >= 4) return createPlan(args);
  if (args[0] === "env" && (args[1] === "rm" || args[1] === "delete") && args.length === 3) {
    return FAST_NAME_PATTERN.test(args[2]!) ? { kind: "rm", env: args[2]! } : undefined;
  }
  return undefined;
}
