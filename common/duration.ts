/**
 * Durations as people write them in flags and lab files: "90s", "30m", "2h",
 * "1d", or a bare number of seconds. Zero and anything else are refused.
 */
const UNIT_SECONDS = { "": 1, s: 1, m: 60, h: 3600, d: 86400 } as const;

/** Seconds, or undefined when `raw` is not a positive duration. */
export function durationSeconds(raw: string | number): number | undefined {
  if (typeof raw === "number") return Number.isSafeInteger(raw) && raw > 0 ? raw : undefined;
  const m = /^([0-9]{1,12})([smhd]?)$/.exec(raw.trim());
  if (!m || Number(m[1]) === 0) return undefined;
  return Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
}

/** "1h" (3600 s) → "1h0m"; for time left in listings. Negative or zero → "0s". */
export function formatSeconds(total: number): string {
  const s = Math.max(0, Math.floor(total));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}
