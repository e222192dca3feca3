/** Types for bench/run.mjs (plain JavaScript so it runs before the build). */
export type ResolvedBench = { kind: "mjs" | "ts"; entry: string; source: string };
export function listBenches(root: string): string[];
export function resolveBench(root: string, name: string | undefined): ResolvedBench | Error;
export function newestSource(root: string, dirs?: string[]): number;
export function needsBuild(root: string, entry: string): boolean;
export function main(argv: string[], opts?: { root?: string }): Promise<number>;
