/**
 * `name@N`: one version of a base (N >= 1), the form used in messages, maps,
 * paths and the CLI. One place builds, splits and orders it, so every part
 * of the cluster spells it the same way. (`name` alone, "the latest", is
 * common/names.ts `parseVersionRef`.)
 */
import { invalidArgument } from "./errors.js";
import { validateName } from "./names.js";

export interface BaseRef {
  readonly base: string;
  /** >= 1 */
  readonly version: number;
}

/** "name@N". */
export function formatBaseRef(base: string, version: number): string {
  return `${base}@${version}`;
}

/** "name@N" of anything that has a base and a version (a BaseVersion, its metadata, a BaseRef). */
export function baseRefOf(v: { base: string; version: number }): string {
  return formatBaseRef(v.base, v.version);
}

/** Splits "name@N" (a valid base name, N >= 1); INVALID_ARGUMENT otherwise. */
export function parseBaseRef(text: string): BaseRef {
  const at = text.lastIndexOf("@");
  const v = at < 0 ? "" : text.slice(at + 1);
  if (at < 0 || !/^[1-9][0-9]{0,8}$/.test(v)) {
    throw invalidArgument(`invalid base version reference ${JSON.stringify(text)}`, {
      reason: "INVALID_BASE_REF",
      hint: "write NAME@N with N a positive integer",
    });
  }
  return { base: validateName("base", text.slice(0, at)), version: Number(v) };
}

/** By name, then by version as a number (so web@9 comes before web@10). */
export function compareBaseRefs(a: BaseRef, b: BaseRef): number {
  return a.base < b.base ? -1 : a.base > b.base ? 1 : a.version - b.version;
}
