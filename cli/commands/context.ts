/** `protoctl context ls|use|show|add|rm`: named controllers in the CLI config file. */
import { Command } from "commander";
import { invalidArgument, notFound } from "../../common/errors.js";
import {
  type ContextEntry,
  configPath,
  loadCliConfig,
  resolveContext,
  saveCliConfig,
} from "../config/contexts.js";
import type { ListSpec } from "../output/format.js";
import { describeFlags, examples, globals, listFlags, name, printList, printObject, say } from "./common.js";

interface Row extends ContextEntry {
  name: string;
  current: boolean;
}

const contextList: ListSpec<Row> = {
  name: (r) => r.name,
  toJSON: ({ current, ...rest }) => ({ ...rest, current }),
  columns: [
    { header: "CURRENT", get: (r) => (r.current ? "*" : "") },
    { header: "NAME", get: (r) => r.name },
    { header: "CONTROLLER", get: (r) => r.controller },
    { header: "AUTH", get: (r) => (r.insecure ? "insecure" : r.cert || r.certData ? "tls+cert" : "tls") },
    { header: "CA", get: (r) => r.ca || (r.caData ? "(inline)" : "-"), wide: true },
    { header: "CERT", get: (r) => r.cert || (r.certData ? "(inline)" : "-"), wide: true },
    { header: "UPLOAD", get: (r) => (r.upload ? "yes" : "auto"), wide: true },
  ],
};

export function command(_name: string): Command {
  const cmd = new Command("context").description(
    `manage contexts (controller address and credentials) in ${configPath()}`,
  );

  examples(
    listFlags(cmd.command("ls").alias("list").description("list contexts; * marks the current one")),
    "protoctl context ls",
  ).action(async (opts: { output: string; quiet?: boolean }) => {
    const cfg = await loadCliConfig();
    const rows = Object.entries(cfg.contexts).map(([n, c]) => ({
      ...c,
      name: n,
      current: n === cfg.currentContext,
    }));
    await printList(rows, contextList, opts);
  });

  examples(
    cmd.command("use").argument("<name>", "context name").description("make a context the current one"),
    "protoctl context use local",
  ).action(async (n: string) => {
    const cfg = await loadCliConfig();
    if (!cfg.contexts[n]) throw unknownContext(n, Object.keys(cfg.contexts));
    cfg.currentContext = n;
    await saveCliConfig(cfg);
    say(`switched to context "${n}"`);
  });

  examples(
    describeFlags(
      cmd
        .command("show")
        .argument("[name]", "context name (default: the one in use)")
        .description("show a context (the one this command would use by default)"),
    ),
    "protoctl context show",
    "PROTOCTL_CONTEXT=lab protoctl context show -o json",
  ).action(async (n: string | undefined, opts: { output: string }, self: Command) => {
    const cfg = await loadCliConfig();
    const ctx = resolveContext(cfg, n ?? globals(self).context, process.env);
    const { caData, certData, keyData, ...shown } = ctx;
    await printObject(
      {
        ...shown,
        ...(caData ? { caData: "(inline)" } : {}),
        ...(certData ? { certData: "(inline)" } : {}),
        ...(keyData ? { keyData: "(inline)" } : {}),
        configFile: configPath(),
      },
      opts.output,
    );
  });

  examples(
    cmd
      .command("add")
      .argument("<name>", "context name")
      .description("add or replace a context")
      .requiredOption("--controller <address>", "controller address host:port")
      .option("--ca <file>", "CA certificate (PEM) that signed the controller's certificate")
      .option("--cert <file>", "client certificate (PEM)")
      .option("--key <file>", "client key (PEM)")
      .option("--insecure", "plaintext gRPC, no TLS (loopback development only)")
      .option("--upload", "always upload base imports instead of sending local paths")
      .option("--use", "make it the current context"),
    "protoctl context add lab --controller 10.0.0.5:7443 --ca ca.pem --cert admin.pem --key admin-key.pem --use",
  ).action(
    async (
      n: string,
      opts: {
        controller: string;
        ca?: string;
        cert?: string;
        key?: string;
        insecure?: boolean;
        upload?: boolean;
        use?: boolean;
      },
    ) => {
      name("context", n);
      const { resolve } = await import("node:path");
      const cfg = await loadCliConfig();
      const entry: ContextEntry = { controller: opts.controller };
      if (opts.ca) entry.ca = resolve(opts.ca);
      if (opts.cert) entry.cert = resolve(opts.cert);
      if (opts.key) entry.key = resolve(opts.key);
      if (opts.insecure) entry.insecure = true;
      if (opts.upload) entry.upload = true;
      cfg.contexts[n] = entry;
      if (opts.use || !cfg.currentContext) cfg.currentContext = n;
      await saveCliConfig(cfg);
      say(`context "${n}" saved${cfg.currentContext === n ? " and in use" : ""}`);
    },
  );

  examples(
    cmd
      .command("import")
      .argument("<file>", "credential file from `protoctl user add` (or admin.json)")
      .option("--name <name>", "context name (default: the file's name before the first dot)")
      .option("--use", "make it the current context"),
    "protoctl context import alice.protoctl.json --use",
  ).action(async (file: string, opts: { name?: string; use?: boolean }) => {
    const { basename } = await import("node:path");
    const { readFile } = await import("node:fs/promises");
    const n = opts.name ?? basename(file).split(".")[0]!;
    name("context", n);
    let cred: {
      controller?: unknown;
      caPem?: unknown;
      certPem?: unknown;
      keyPem?: unknown;
      serverName?: unknown;
    };
    try {
      cred = JSON.parse(await readFile(file, "utf8"));
    } catch (err) {
      throw invalidArgument(`cannot read credential file ${file}: ${(err as Error).message}`, {
        reason: "BAD_CREDENTIAL_FILE",
      });
    }
    const str = (v: unknown) => (typeof v === "string" && v ? v : undefined);
    const controller = str(cred.controller);
    const caData = str(cred.caPem);
    const certData = str(cred.certPem);
    const keyData = str(cred.keyPem);
    if (!controller || !caData || !certData || !keyData) {
      throw invalidArgument(`${file} is not a protoctl credential file`, {
        reason: "BAD_CREDENTIAL_FILE",
        hint: "it needs controller, caPem, certPem and keyPem (written by `protoctl user add`)",
      });
    }
    const cfg = await loadCliConfig();
    const serverName = str(cred.serverName);
    cfg.contexts[n] = { controller, caData, certData, keyData, ...(serverName ? { serverName } : {}) };
    if (opts.use || !cfg.currentContext) cfg.currentContext = n;
    await saveCliConfig(cfg);
    say(`context "${n}" imported${cfg.currentContext === n ? " and in use" : ""}`);
  });

  examples(
    cmd.command("rm").alias("delete").argument("<name>", "context name").description("remove a context"),
    "protoctl context rm lab",
  ).action(async (n: string) => {
    const cfg = await loadCliConfig();
    if (!cfg.contexts[n]) throw unknownContext(n, Object.keys(cfg.contexts));
    delete cfg.contexts[n];
    if (cfg.currentContext === n) cfg.currentContext = undefined;
    await saveCliConfig(cfg);
    say(`context "${n}" removed`);
  });

  return examples(cmd, "protoctl context ls", "protoctl context use local");
}

function unknownContext(n: string, known: string[]) {
  return notFound(`no context named ${JSON.stringify(n)}`, {
    reason: "CONTEXT_NOT_FOUND",
    hint: known.length
      ? `known contexts: ${known.join(", ")}`
      : "run `protoctl up` to create the local context",
  });
}
