/**
 * True when node was started with every one of `flags`, on its command line or in NODE_OPTIONS:
 * node reads heap flags at start only (common/agent-launch.ts, common/controller-launch.ts).
 */
export function launchedWith(
  flags: readonly string[],
  execArgv: readonly string[] = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? "",
): boolean {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  return flags.every((f) => given.includes(f));
}
