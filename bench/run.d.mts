/** Types for bench/run.mjs (plain JavaScript so it runs before the build). */
export type ResolvedBench = { kind: "mjs" | "ts"; entry: string; source: string };
export function listBenches(root: string): string[];
export function resolveBench(root: string, name: string | undefined): ResolvedBench | Error;
export function newestSource(root: string, dirs?: string[]): number;
export function needsBuild(root: string, entry: string): boolean;
export function main(argv: string[], opts?: { root?: string }): Promise<number>;
export const QUICK_BENCHES: string[];
export function lastReport(text: string): Record<string, unknown> | undefined;
export function verdict(code: number, report: Record<string, unknown> | undefined): number;
export function summaryTable(
  rows: Array<{ name: string; code: number; ms: number; report?: Record<string, unknown> }>,
): string;
