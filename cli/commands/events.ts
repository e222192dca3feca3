/** `protoctl events`: the cluster's event stream (node joined, env started, base pushed...). */
import { Command, Option } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { Event } from "../../proto/gen/protoctl/v1/types.js";
import { collect, examples, getApi } from "./common.js";

export function formatEvent(e: Event): string {
  const t = new Date(Number(e.timeMs)).toISOString().replace("T", " ").replace("Z", "");
  return `${t}  ${e.kind.padEnd(16)} ${e.subject.padEnd(24)} ${e.message}`.trimEnd();
}

export function command(_name: string): Command {
  const cmd = new Command("events")
    .description("stream cluster events until interrupted")
    .option("--kind <prefix>", "only kinds starting with this, e.g. env. (repeatable)", collect, [])
    .option(
      "--since <revision>",
      "replay the events after this etcd revision (the last `revision` seen with -o json: resume without repeats)",
      "0",
    )
    .addOption(
      new Option("-o, --output <format>", "text or json (one JSON object per line)")
        .choices(["text", "json"])
        .default("text"),
    )
    .action(async (opts: { kind: string[]; since: string; output: string }, self: Command) => {
      // a typo must not silently replay the whole history
      if (!/^\d+$/.test(opts.since)) {
        throw invalidArgument(`invalid --since ${JSON.stringify(opts.since)}`, {
          reason: "INVALID_FLAG",
          hint: "an etcd revision number, as in the revision field of `protoctl events -o json`",
        });
      }
      const api = await getApi(self);
      const sinceRevision = Number(opts.since);
      for await (const e of api.stream((c, o) => c.watchEvents({ sinceRevision, kinds: opts.kind }, o))) {
        process.stdout.write(
          opts.output === "json" ? `${JSON.stringify(Event.toJSON(e))}\n` : `${formatEvent(e)}\n`,
        );
      }
    });
  return examples(cmd, "protoctl events", "protoctl events --kind env. -o json");
}
