/** `protoctl lab ...`: sets of environments from one spec file, spread over nodes. */
import { Command, Option } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { envPhaseToJSON } from "../../proto/gen/protoctl/v1/types.js";
import { labList } from "../output/columns.js";
import { enumLabel } from "../output/format.js";
import { withProgress } from "../output/progress.js";
import { describeCommand, examples, getApi, listCommand, name, say } from "./common.js";

export function command(_name: string): Command {
  const cmd = new Command("lab").description(
    "manage labs: environments on several hosts joined by lab networks",
  );

  examples(
    cmd
      .command("up")
      .argument("<file>", "lab spec (YAML)")
      .description("create or update a lab from a spec file (only the differences are applied)")
      .option("--dry-run", "show what would change, change nothing")
      .option(
        "--ttl <duration>",
        "delete the whole lab this long after applying, e.g. 2h (overrides the file's ttl)",
      )
      .option("--no-wait", "return once recorded, do not wait until ready"),
    "protoctl lab up lab.yaml",
    "protoctl lab up lab.yaml --dry-run",
  ).action(async (file: string, opts: { dryRun?: boolean; wait: boolean; ttl?: string }, self: Command) => {
    const { readFile } = await import("node:fs/promises");
    let specYaml: string;
    try {
      specYaml = await readFile(file, "utf8");
    } catch (err) {
      throw invalidArgument(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
        reason: "FILE_UNREADABLE",
      });
    }
    // `source:` files are read here, relative to the spec: the controller never reads client paths
    const { dirname, resolve } = await import("node:path");
    const { inlineFileSources } = await import("../labs/inline-files.js");
    specYaml = await inlineFileSources(specYaml, (src) => readFile(resolve(dirname(file), src)), file);
    const api = await getApi(self);
    const { parseDuration } = await import("./common.js");
    const ttlMs = opts.ttl === undefined ? undefined : parseDuration(opts.ttl) * 1000;
    const req = { specYaml, wait: opts.wait, dryRun: !!opts.dryRun, ttlMs };
    const lab = await withProgress(
      opts.dryRun ? `Planning lab from ${file}` : `Applying lab ${file}`,
      async (sink) => {
        let final: import("../../proto/gen/protoctl/v1/types.js").Lab | undefined;
        for await (const p of api.stream((c, o) => c.applyLab(req, o))) {
          if (p.lab) final = p.lab;
          if (p.machine || p.message) {
            const phase = p.phase ? ` (${enumLabel(envPhaseToJSON(p.phase), "ENV_PHASE_")})` : "";
            const line = `${p.action || "update"} ${p.machine}${phase}${p.message ? `: ${p.message}` : ""}`;
            if (opts.dryRun) sink.log(line);
            sink.progress({ step: line, fraction: -1, message: "", node: "", bytesDone: 0, bytesTotal: 0 });
          }
        }
        return {
          value: final,
          done: final ? `lab ${final.name}: ${final.machines.length} machine(s)` : "lab applied",
        };
      },
    );
    if (lab) say(`lab/${lab.name} ${opts.dryRun ? "planned" : "applied"} (${lab.machines.length} machines)`);
  });

  examples(
    cmd
      .command("down")
      .argument("<name>", "lab name")
      .description("delete a lab: its environments and networks")
      .option("--no-wait", "do not wait until deleted"),
    "protoctl lab down demo",
  ).action(async (n: string, opts: { wait: boolean }, self: Command) => {
    name("lab", n);
    const api = await getApi(self);
    await api.unary("deleteLab", { name: n, wait: opts.wait });
    say(`lab/${n} deleted`);
  });

  listCommand(
    cmd,
    "list labs",
    "protoctl lab ls",
    labList,
    async (api) => (await api.unary("listLabs", {}, { deadlineMs: 15_000 })).labs,
  );

  describeCommand(
    cmd,
    "lab",
    "<name>",
    "show a lab: machines, nodes, networks",
    "protoctl lab describe demo",
    async (api, n) => {
      const { Lab } = await import("../../proto/gen/protoctl/v1/types.js");
      return Lab.toJSON(await api.unary("getLab", { name: n }, { deadlineMs: 15_000 }));
    },
  );

  examples(
    cmd
      .command("graph")
      .argument("<name>", "lab name")
      .description("print a lab's topology as Graphviz dot or Mermaid")
      .addOption(
        new Option("--format <format>", "dot or mermaid").choices(["dot", "mermaid"]).default("dot"),
      ),
    "protoctl lab graph demo | dot -Tsvg > demo.svg",
    "protoctl lab graph demo --format mermaid",
  ).action(async (n: string, opts: { format: string }, self: Command) => {
    name("lab", n);
    const api = await getApi(self);
    const res = await api.unary("labGraph", { name: n, format: opts.format }, { deadlineMs: 15_000 });
    process.stdout.write(res.text.endsWith("\n") ? res.text : `${res.text}\n`);
  });

  examples(
    cmd
      .command("exec")
      .argument("<lab>", "lab name")
      .argument("<machine>", "machine name in the lab (e.g. web-2)")
      .argument("<command...>", "command and arguments (after --)")
      .description("run a command in a lab machine (the env <lab>-<machine>); exits with its status")
      .option("-i, --stdin", "send this terminal's input to the command")
      .option("-t, --tty", "give the command a terminal"),
    "protoctl lab exec demo web-1 -- ping -c1 db-1",
    "protoctl lab exec -it demo web-1 -- /bin/sh",
  ).action(
    async (
      lab: string,
      machine: string,
      command: string[],
      opts: { stdin?: boolean; tty?: boolean },
      self: Command,
    ) => {
      name("lab", lab);
      const env = name("env", `${lab}-${machine}`);
      const { execInEnv } = await import("./env-exec.js");
      const api = await getApi(self);
      process.exitCode = await execInEnv(api, {
        env,
        command,
        stdin: !!opts.stdin,
        tty: !!opts.tty,
        envVars: {},
        workdir: "",
        user: "",
        login: false,
      });
    },
  );

  return examples(cmd, "protoctl lab up lab.yaml", "protoctl lab ls");
}
