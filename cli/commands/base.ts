/** `protoctl base ...`: versioned read-only root filesystems. */
import { Command, Option } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { formatVersionRef } from "../../common/names.js";
import type { OperationResult } from "../../proto/gen/protoctl/v1/types.js";
import { baseList } from "../output/columns.js";
import { bytes } from "../output/format.js";
import { consumeOperation, withProgress } from "../output/progress.js";
import {
  collect,
  currentContext,
  describeCommand,
  examples,
  getApi,
  keyValues,
  listCommand,
  name,
  say,
  versionRef,
} from "./common.js";

export function command(_name: string): Command {
  const cmd = new Command("base").description("manage bases: versioned read-only root filesystems");

  examples(
    cmd
      .command("import")
      .argument("<name>", "base name")
      .description(
        "import a root filesystem (a directory, a tar archive, or an OCI image archive) as a new version",
      )
      .addOption(new Option("--dir <dir>", "root filesystem directory").conflicts(["tar", "ociArchive"]))
      .addOption(
        new Option("--tar <file>", "tar archive (plain, .gz, .zst, .xz)").conflicts(["dir", "ociArchive"]),
      )
      .addOption(
        new Option(
          "--oci-archive <file>",
          "OCI image archive (`skopeo copy … oci-archive:`, `podman save --format oci-archive`, `docker save`): " +
            "its layers flattened; its Entrypoint/Cmd, Env, WorkingDir and User become the defaults of envs made from it",
        ).conflicts(["dir", "tar"]),
      )
      .option("--node <node>", "import on this node (default: the scheduler's choice)")
      .option(
        "--upload",
        "stream the files to the controller instead of passing a path (default: only when the controller is remote)",
      )
      .option("--no-upload", "pass the path even to a remote controller (the path must exist on that host)"),
    "protoctl base import busybox --dir ./rootfs",
    "protoctl base import debian --tar debian.tar.zst --upload",
    "skopeo copy docker://docker.io/library/alpine:3 oci-archive:alpine.tar && protoctl base import alpine --oci-archive alpine.tar",
  ).action(
    async (
      n: string,
      opts: { dir?: string; tar?: string; ociArchive?: string; node?: string; upload?: boolean },
      self: Command,
    ) => {
      name("base", n);
      if (opts.node) name("node", opts.node);
      if (!opts.dir && !opts.tar && !opts.ociArchive) {
        throw invalidArgument("base import needs --dir, --tar or --oci-archive", {
          reason: "INVALID_FLAG",
          hint: "e.g. `protoctl base import busybox --dir ./rootfs`",
        });
      }
      const { importBase } = await import("./base-import.js");
      const ctx = await currentContext(self);
      const api = await getApi(self);
      const v = await importBase(api, ctx, {
        name: n,
        dir: opts.dir,
        tar: opts.tar,
        ociArchive: opts.ociArchive,
        node: opts.node,
        upload: opts.upload,
      });
      say(
        `base/${formatVersionRef(v.base, v.version)} imported${v.sizeBytes ? ` (${bytes(v.sizeBytes)})` : ""}`,
      );
    },
  );

  examples(
    cmd
      .command("build")
      .argument("<name>", "base name")
      .description("build a base with debootstrap, busybox or a builder script, as a new version")
      .option("--debootstrap <suite>", "Debian/Ubuntu suite, e.g. bookworm")
      .option("--busybox", "a tiny root filesystem from the node's static busybox (seconds)")
      .option("--variant <variant>", "debootstrap variant", "minbase")
      .option(
        "--include <pkgs>",
        "extra packages, comma-separated",
        (v: string, p: string[]) => [...p, ...v.split(",").filter(Boolean)],
        [],
      )
      .option("--mirror <url>", "package mirror (default: the host's apt mirror)")
      .option(
        "--script <file>",
        "builder script run with the target directory as $1 (instead of debootstrap)",
      )
      .option("--node <node>", "build on this node"),
    "protoctl base build debian --debootstrap bookworm --include ca-certificates,curl",
    "protoctl base build busybox --busybox",
  ).action(
    async (
      n: string,
      opts: {
        debootstrap?: string;
        busybox?: boolean;
        variant: string;
        include: string[];
        mirror?: string;
        script?: string;
        node?: string;
      },
      self: Command,
    ) => {
      name("base", n);
      if (opts.node) name("node", opts.node);
      if ([opts.debootstrap, opts.script, opts.busybox].filter(Boolean).length !== 1) {
        throw invalidArgument(
          "base build needs exactly one of --debootstrap SUITE, --busybox or --script FILE",
          {
            reason: "INVALID_FLAG",
            hint: "e.g. `protoctl base build debian --debootstrap bookworm`",
          },
        );
      }
      const spec = opts.debootstrap
        ? {
            builder: {
              $case: "debootstrap" as const,
              debootstrap: {
                suite: opts.debootstrap,
                variant: opts.variant,
                packages: opts.include,
                mirror: opts.mirror ?? "",
              },
            },
          }
        : {
            builder: {
              $case: "script" as const,
              script: opts.busybox
                ? Buffer.from((await import("./busybox-builder.js")).BUSYBOX_BUILDER)
                : await readLocal(opts.script!),
            },
          };
      const api = await getApi(self);
      const v = await runOperation(`Building base ${n}`, (sink) =>
        consumeOperation(
          api.stream((c, o) => c.buildBase({ name: n, spec, node: opts.node ?? "" }, o)),
          sink,
        ),
      );
      say(
        `base/${formatVersionRef(v.base, v.version)} built${v.sizeBytes ? ` (${bytes(v.sizeBytes)})` : ""}`,
      );
    },
  );

  examples(
    cmd
      .command("update")
      .argument("<name>", "base name")
      .argument("[command...]", "command to run inside (after --)")
      .description("make version N+1 by running an update inside a snapshot of the latest version")
      .option("--command <command>", "shell command run inside with /bin/sh -c", "")
      .option("--script <file>", "script run inside")
      .option("--network", "give the update network access (host network)")
      .option("--node <node>", "update on this node"),
    "protoctl base update debian --network --command 'apt-get update && apt-get -y upgrade'",
    "protoctl base update busybox -- /bin/sh -c 'echo v2 > /etc/motd'",
  ).action(
    async (
      n: string,
      argv: string[],
      opts: { command: string; script?: string; network?: boolean; node?: string },
      self: Command,
    ) => {
      name("base", n);
      if (opts.node) name("node", opts.node);
      const command = opts.command ? ["/bin/sh", "-c", opts.command] : argv;
      if (command.length === 0 && !opts.script) {
        throw invalidArgument("base update needs --command, --script or a command after --", {
          reason: "INVALID_FLAG",
          hint: "e.g. `protoctl base update debian --network --command 'apt-get -y upgrade'`",
        });
      }
      const script = opts.script ? await readLocal(opts.script) : Buffer.alloc(0);
      const api = await getApi(self);
      const v = await runOperation(`Updating base ${n}`, (sink) =>
        consumeOperation(
          api.stream((c, o) =>
            c.updateBase({ name: n, command, script, node: opts.node ?? "", network: !!opts.network }, o),
          ),
          sink,
        ),
      );
      say(`base/${formatVersionRef(v.base, v.version)} sealed (from ${v.parent || "previous version"})`);
    },
  );

  listCommand(
    cmd,
    "list bases",
    "protoctl base ls -o wide",
    baseList,
    async (api) => (await api.unary("listBases", {}, { deadlineMs: 15_000 })).bases,
  );

  describeCommand(
    cmd,
    "base",
    "<name>",
    "show a base and its versions",
    "protoctl base describe debian",
    async (api, n) => {
      const { Base } = await import("../../proto/gen/protoctl/v1/types.js");
      return Base.toJSON(await api.unary("getBase", { name: n }, { deadlineMs: 15_000 }));
    },
  );

  examples(
    cmd
      .command("push")
      .argument("<ref>", "NAME or NAME@N (default: latest)")
      .description("propagate a base version to other nodes (seed over NBD, then copied locally)")
      .option("--to <nodes...>", "`all` or node names (default: all)")
      .option("--selector <k=v>", "nodes with these labels (repeatable)", collect, [])
      .option("--fanout <k>", "max peers one source serves (0 = default)", "0")
      .addOption(
        new Option("--transport <kind>", "seed or delta (default: the controller's choice)").choices([
          "seed",
          "delta",
        ]),
      )
      .option("--wait-local", "finish when every node holds a local copy, not when usable"),
    "protoctl base push debian@3 --to all",
    "protoctl base push debian --to node-2 node-3",
    "protoctl base push debian --selector rack=a",
  ).action(
    async (
      ref: string,
      opts: { to?: string[]; selector: string[]; fanout: string; transport?: string; waitLocal?: boolean },
      self: Command,
    ) => {
      const r = versionRef("base", ref);
      const selector = keyValues(opts.selector, "selector");
      const to = opts.to ?? [];
      const all = to.includes("all") || (to.length === 0 && Object.keys(selector).length === 0);
      const nodes = to.filter((t) => t !== "all").map((t) => name("node", t));
      const fanout = Number(opts.fanout);
      if (!Number.isInteger(fanout) || fanout < 0) {
        throw invalidArgument(`invalid --fanout ${JSON.stringify(opts.fanout)}`, {
          reason: "INVALID_FLAG",
          hint: "a non-negative integer",
        });
      }
      const api = await getApi(self);
      const req = {
        ref: r,
        nodes,
        all,
        selector,
        fanout,
        transport: opts.transport ?? "",
        waitLocal: !!opts.waitLocal,
      };
      const reached = await withProgress(`Pushing base ${ref}`, async (sink) => {
        const done = new Set<string>();
        for await (const p of api.stream((c, o) => c.pushBase(req, o))) {
          if (p.node) {
            const { attachmentPhaseToJSON } = await import("../../proto/gen/protoctl/v1/types.js");
            const phase = attachmentPhaseToJSON(p.phase).replace("ATTACHMENT_PHASE_", "").toLowerCase();
            sink.progress({
              step: phase,
              fraction: p.fraction,
              message: [p.sourceNode ? `from ${p.sourceNode}` : "", p.message].filter(Boolean).join(" "),
              node: p.node,
              bytesDone: 0,
              bytesTotal: 0,
            });
            if (phase === "local" || phase === "attached") done.add(p.node);
          }
          if (p.done) break;
        }
        return { value: done, done: `base/${ref} pushed to ${done.size} node(s)` };
      });
      say(`base/${ref} pushed${reached.size ? ` to ${[...reached].sort().join(", ")}` : ""}`);
    },
  );

  examples(
    cmd
      .command("rm")
      .alias("delete")
      .argument("<ref>", "NAME (every version) or NAME@N")
      .description("delete a base version, or all versions of a base"),
    "protoctl base rm debian@1",
  ).action(async (ref: string, _o: unknown, self: Command) => {
    const r = versionRef("base", ref);
    const api = await getApi(self);
    const res = await api.unary("deleteBase", { ref: r });
    const names = res.deleted.map((v) => `base/${formatVersionRef(v.base, v.version)}`);
    say(names.length ? `${names.join(", ")} deleted` : `base/${ref} deleted`);
  });

  return examples(cmd, "protoctl base import busybox --dir ./rootfs", "protoctl base ls");
}

/** Runs an operation with progress and insists on a base-version result. */
export async function runOperation(
  title: string,
  consume: (sink: import("../output/progress.js").ProgressSink) => Promise<OperationResult | undefined>,
) {
  return withProgress(title, async (sink) => {
    const result = await consume(sink);
    if (result?.result?.$case !== "baseVersion") {
      const { internal } = await import("../../common/errors.js");
      throw internal("the controller ended the operation without a result", {
        reason: "NO_RESULT",
        hint: "see `protoctl events` and the controller's log",
      });
    }
    const v = result.result.baseVersion;
    return { value: v, done: `${title}: ${formatVersionRef(v.base, v.version)} ready` };
  });
}

async function readLocal(file: string): Promise<Buffer> {
  const { readFile } = await import("node:fs/promises");
  try {
    return await readFile(file);
  } catch (err) {
    throw invalidArgument(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      {
        reason: "FILE_UNREADABLE",
      },
    );
  }
}
