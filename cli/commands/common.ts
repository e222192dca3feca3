/**
 * Helpers every command module uses: the API connection for this process,
 * listing flags, help examples, and argument checks that fail with exit
 * status 2 before anything is sent.
 */
import { type Command, Option } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { type ObjectKind, parseVersionRef, type VersionRef, validateName } from "../../common/names.js";
import type { Api } from "../client/connect.js";
import { loadCliConfig, type ResolvedContext, resolveContext } from "../config/contexts.js";
import { type ListOptions, type ListSpec, renderList, renderObject } from "../output/format.js";

let api: Api | undefined;
let context: ResolvedContext | undefined;

/** The global options (`--context`) seen from any subcommand. */
export function globals(cmd: Command): { context?: string } {
  return cmd.optsWithGlobals() as { context?: string };
}

/** The context this invocation uses (flag, env, config file). */
export async function currentContext(cmd: Command): Promise<ResolvedContext> {
  if (!context) context = resolveContext(await loadCliConfig(), globals(cmd).context, process.env);
  return context;
}

/** The connected API, created on first use and shared by the process. */
export async function getApi(cmd: Command): Promise<Api> {
  if (!api) {
    const ctx = await currentContext(cmd);
    const { connect } = await import("../client/connect.js");
    api = await connect(ctx);
  }
  return api;
}

/** Closes the connection and forgets the context (the process can exit; tests start afresh). */
export function closeApi(): void {
  api?.close();
  api = undefined;
  context = undefined;
}

/** Adds `-o table|wide|json|yaml` and `-q`. */
export function listFlags(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("-o, --output <format>", "output format")
        .choices(["table", "wide", "json", "yaml"])
        .default("table"),
    )
    .option("-q, --quiet", "print names only");
}

/** Adds `-o yaml|json` to a describe command. */
export function describeFlags(cmd: Command): Command {
  return cmd.addOption(
    new Option("-o, --output <format>", "output format").choices(["yaml", "json"]).default("yaml"),
  );
}

/** Appends examples to a command's --help. */
export function examples(cmd: Command, ...lines: string[]): Command {
  return cmd.addHelpText(
    "after",
    `\nExample${lines.length > 1 ? "s" : ""}:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`,
  );
}

export function name(kind: ObjectKind, value: string): string {
  return validateName(kind, value);
}

export function versionRef(kind: ObjectKind, value: string): VersionRef {
  return parseVersionRef(kind, value);
}

export async function printList<T>(items: readonly T[], spec: ListSpec<T>, opts: ListOptions): Promise<void> {
  process.stdout.write(await renderList(items, spec, opts));
}

export async function printObject(json: unknown, output: string | undefined): Promise<void> {
  process.stdout.write(await renderObject(json, output));
}

/** Adds `ls` (alias `list`) with the listing flags: one call for the items, printed as a table, names, JSON or YAML. */
export function listCommand<T>(
  parent: Command,
  description: string,
  example: string,
  columns: ListSpec<T>,
  list: (api: Api) => Promise<readonly T[]>,
): Command {
  return examples(listFlags(parent.command("ls").alias("list").description(description)), example).action(
    async (opts: ListOptions, self: Command) => {
      const api = await getApi(self);
      await printList(await list(api), columns, opts);
    },
  );
}

/** Adds `describe <arg>`: checks the name, fetches the object as JSON and prints it as YAML or JSON. */
export function describeCommand(
  parent: Command,
  kind: ObjectKind,
  arg: string,
  description: string,
  example: string,
  get: (api: Api, name: string) => Promise<unknown>,
): Command {
  return examples(
    describeFlags(parent.command("describe").argument(arg).description(description)),
    example,
  ).action(async (n: string, opts: { output: string }, self: Command) => {
    name(kind, n);
    const api = await getApi(self);
    await printObject(await get(api, n), opts.output);
  });
}

/** Prints a confirmation line for people (stdout, so scripts can silence it). */
export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** `k=v` pairs (repeatable flag) into a map. */
export function keyValues(pairs: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs ?? []) {
    const eq = p.indexOf("=");
    if (eq <= 0) {
      throw invalidArgument(`invalid ${what} ${JSON.stringify(p)}`, {
        reason: "INVALID_FLAG",
        hint: `write ${what} as KEY=VALUE`,
      });
    }
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

/** Collector for repeatable flags: `.option("--layer <name>", "...", collect, [])`. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** "90s", "30m", "2h", "1d", "3600" → seconds. */
export function parseDuration(raw: string): number {
  const m = /^([0-9]+)([smhd]?)$/.exec(raw.trim());
  if (!m || Number(m[1]) === 0) {
    throw invalidArgument(`invalid duration ${JSON.stringify(raw)}`, {
      reason: "INVALID_FLAG",
      hint: "write a duration like 90s, 30m, 2h or 1d",
    });
  }
  const mult = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * mult;
}

/** "512M", "2G", "1073741824" → bytes. */
export function parseBytes(raw: string, what: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$/.exec(raw);
  if (!m) {
    throw invalidArgument(`invalid ${what} ${JSON.stringify(raw)}`, {
      reason: "INVALID_FLAG",
      hint: `write ${what} as a size like 512M or 2G`,
    });
  }
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * mult);
}
