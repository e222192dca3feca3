/**
 * Shell completion engine behind the hidden `protoctl __complete -- WORDS...`:
 * walks the real command tree (so completion never drifts from the flags),
 * then offers subcommands, flags, flag values, or object names fetched from
 * the controller. Output: one candidate per line, `value<TAB>description`;
 * the single line `:files` asks the shell for file-name completion.
 */
import type { Command, Option } from "commander";

export type NameKind = "env" | "base" | "node" | "layer" | "lab" | "context";

export interface Candidate {
  value: string;
  description?: string;
}

export const FILES = ":files";

/** Object names for dynamic completion; failures yield nothing (never block the shell). */
export type NameFetcher = (kind: NameKind) => Promise<string[]>;

/** Flag → what its value is. */
const FLAG_VALUES: Record<string, NameKind | string[] | typeof FILES> = {
  "--base": "base",
  "--node": "node",
  "--layer": "layer",
  "--parent": "layer",
  "--build-on": "base",
  "--context": "context",
  "--output": ["table", "wide", "json", "yaml"],
  "--network": ["none", "host", "private", "bridge:"],
  "--format": ["dot", "mermaid"],
  "--transport": ["seed", "delta"],
  "--restart": ["never", "always"],
  "--pool-kind": ["tmpfs", "file", "mount"],
  "--dir": FILES,
  "--tar": FILES,
  "--script": FILES,
  "--playbook": FILES,
  "--file": FILES,
  "--config": FILES,
  "--state-dir": FILES,
  "--as-base": "base",
  "--to": "node",
};

/** Positional argument kinds by command path ("env exec" → env names). */
export function positionalKind(path: string): NameKind | typeof FILES | undefined {
  const [group, verb] = path.split(" ");
  if (group === "env" && verb && verb !== "create") return "env";
  if (group === "base" && verb === "import") return undefined;
  if (group === "base" && verb && verb !== "build") return "base";
  if (group === "node" && verb && verb !== "token" && verb !== "ls") return "node";
  if (group === "layer" && (verb === "describe" || verb === "rm")) return "layer";
  if (group === "lab" && verb === "up") return FILES;
  if (group === "lab" && verb && verb !== "ls") return "lab";
  if (group === "context" && verb && verb !== "ls" && verb !== "add") return "context";
  if (group === "completion") return undefined;
  return undefined;
}

function optionByFlag(cmd: Command, flag: string): Option | undefined {
  for (let c: Command | null = cmd; c; c = c.parent) {
    const o = c.options.find((opt) => opt.long === flag || opt.short === flag);
    if (o) return o;
  }
  return undefined;
}

function visibleOptions(cmd: Command): Option[] {
  const out: Option[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) {
    out.push(...c.options.filter((o) => !o.hidden));
  }
  return out;
}

export async function complete(root: Command, words: string[], fetch: NameFetcher): Promise<Candidate[]> {
  const current = words.length ? words[words.length - 1]! : "";
  const done = words.slice(0, -1);
  let cmd = root;
  const path: string[] = [];
  let positional = 0;
  let afterDashDash = false;
  for (let i = 0; i < done.length; i++) {
    const w = done[i]!;
    if (afterDashDash) continue;
    if (w === "--") {
      afterDashDash = true;
      continue;
    }
    if (w.startsWith("-")) {
      const flag = w.includes("=") ? w.slice(0, w.indexOf("=")) : w;
      const opt = optionByFlag(cmd, flag);
      if (opt && (opt.required || opt.optional) && !w.includes("=")) i++;
      continue;
    }
    const sub = cmd.commands.find((c) => c.name() === w || c.aliases().includes(w));
    if (sub && positional === 0) {
      cmd = sub;
      path.push(sub.name());
    } else {
      positional++;
    }
  }
  if (afterDashDash) return [];

  // The value of a flag?
  const prev = done[done.length - 1];
  if (prev?.startsWith("-") && !prev.includes("=")) {
    const opt = optionByFlag(cmd, prev);
    if (opt && (opt.required || opt.optional)) return valuesFor(opt.long ?? prev, fetch);
  }
  if (current.startsWith("--") && current.includes("=")) {
    const flag = current.slice(0, current.indexOf("="));
    const vals = await valuesFor(flag, fetch);
    return vals.map((v) => ({ ...v, value: v.value === FILES ? FILES : `${flag}=${v.value}` }));
  }
  if (current.startsWith("-")) {
    return visibleOptions(cmd)
      .filter((o) => o.long)
      .map((o) => ({ value: o.long!, description: o.description }));
  }
  const subs = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  if (subs.length && positional === 0) {
    return subs.map((c) => ({ value: c.name(), description: c.description() }));
  }
  const kind = positionalKind(path.join(" "));
  if (kind === FILES) return [{ value: FILES }];
  if (kind && (positional === 0 || cmd.registeredArguments[0]?.variadic)) {
    return (await fetch(kind)).map((value) => ({ value }));
  }
  if (path.join(" ") === "completion") return [{ value: "bash" }, { value: "zsh" }];
  return [];
}

async function valuesFor(flag: string, fetch: NameFetcher): Promise<Candidate[]> {
  const v = FLAG_VALUES[flag];
  if (v === undefined) return [];
  if (v === FILES) return [{ value: FILES }];
  if (Array.isArray(v)) return v.map((value) => ({ value }));
  return (await fetch(v as NameKind)).map((value) => ({ value }));
}

/** Lines for the shell: `value\tdescription` (descriptions trimmed to one line). */
export function formatCandidates(cands: Candidate[]): string {
  return cands
    .map((c) => (c.description ? `${c.value}\t${c.description.split("\n")[0]!.slice(0, 80)}` : c.value))
    .map((l) => `${l}\n`)
    .join("");
}
