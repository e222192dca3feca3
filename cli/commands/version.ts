/** `protoctl version`: the CLI's version and, unless --client, the controller's. */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { examples, getApi } from "./common.js";

export function cliVersion(): string {
  for (const rel of ["../../../package.json", "../../package.json"]) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { version: string }).version;
    } catch {
      // the other layout (dist/cli/commands vs cli/commands)
    }
  }
  return "0.0.0";
}

export function command(_name: string): Command {
  const cmd = new Command("version")
    .description("print the CLI version and the controller's")
    .option("--client", "only the CLI's version, do not contact the controller")
    .option("-o, --output <format>", "output format: text|json", "text")
    .action(async (opts: { client?: boolean; output: string }, self: Command) => {
      const info: Record<string, string> = { client: cliVersion() };
      if (!opts.client) {
        if (opts.output !== "json") process.stdout.write(`client: ${info.client}\n`);
        const api = await getApi(self);
        const v = await api.unary("getVersion", {}, { deadlineMs: 5000 });
        Object.assign(info, {
          server: v.version,
          controller: v.controller,
          leader: v.leader,
          cluster: v.cluster,
        });
        if (opts.output !== "json") {
          process.stdout.write(
            `server: ${v.version} (controller ${v.controller}, leader ${v.leader || "-"})\n`,
          );
        }
      } else if (opts.output !== "json") {
        process.stdout.write(`client: ${info.client}\n`);
      }
      if (opts.output === "json") process.stdout.write(`${JSON.stringify(info)}\n`);
    });
  return examples(cmd, "protoctl version", "protoctl version --client");
}
