/** Types for .ci/folder-cycles.mjs. */
export function folderCycles(
  modules: Array<{ source: string; dependencies: Array<{ resolved: string }> }>,
): string[][];
