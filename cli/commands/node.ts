/** `protoctl node ...`: cluster membership and scheduling state of nodes. */
import { Command } from "commander";
import { invalidArgument } from "../../common/errors.js";
import { nodeList } from "../output/columns.js";
import { consumeOperation, withProgress } from "../output/progress.js";
import {
  collect,
  describeCommand,
  examples,
  getApi,
  keyValues,
  listCommand,
  name,
  parseDuration,
  say,
} from "./common.js";

export function command(_name: string): Command {
  const cmd = new Command("node").description("list and manage nodes (machines running `protoctl agent`)");

  listCommand(
    cmd,
    "list nodes",
    "protoctl node ls -o wide",
    nodeList,
    async (api) => (await api.unary("listNodes", {}, { deadlineMs: 15_000 })).nodes,
  );

  describeCommand(
    cmd,
    "node",
    "<node>",
    "show a node in detail",
    "protoctl node describe node-1",
    async (api, n) => {
      const { Node } = await import("../../proto/gen/protoctl/v1/types.js");
      return Node.toJSON(await api.unary("getNode", { name: n }, { deadlineMs: 15_000 }));
    },
  );

  examples(
    cmd.command("cordon").argument("<node>").description("stop scheduling new envs on a node"),
    "protoctl node cordon node-1",
  ).action(async (n: string, _o: unknown, self: Command) => {
    name("node", n);
    const api = await getApi(self);
    await api.unary("cordonNode", { name: n });
    say(`node/${n} cordoned`);
  });

  examples(
    cmd.command("uncordon").argument("<node>").description("allow scheduling on a node again"),
    "protoctl node uncordon node-1",
  ).action(async (n: string, _o: unknown, self: Command) => {
    name("node", n);
    const api = await getApi(self);
    await api.unary("uncordonNode", { name: n });
    say(`node/${n} uncordoned`);
  });

  examples(
    cmd.command("drain").argument("<node>").description("cordon a node and move or stop its envs"),
    "protoctl node drain node-1",
  ).action(async (n: string, _o: unknown, self: Command) => {
    name("node", n);
    const api = await getApi(self);
    await withProgress(`Draining node ${n}`, async (sink) => {
      await consumeOperation(
        api.stream((c, o) => c.drainNode({ name: n }, o)),
        sink,
      );
      return { value: undefined, done: `Draining node ${n}: done` };
    });
    // the result on stdout, as cordon, rm and base push print theirs (progress stays on stderr)
    say(`node/${n} drained`);
  });

  examples(
    cmd.command("rm").alias("remove").argument("<node>").description("remove a node from the cluster"),
    "protoctl node rm node-1",
  ).action(async (n: string, _o: unknown, self: Command) => {
    name("node", n);
    const api = await getApi(self);
    await api.unary("removeNode", { name: n });
    say(`node/${n} removed`);
  });

  examples(
    cmd
      .command("token")
      .description("create a join token for a new node (`protoctl agent --join-token ...`)")
      .option("--ttl <duration>", "validity, e.g. 30m, 1h, 3600 (seconds)", "1h")
      .option("--label <k=v>", "label given to nodes joining with it (repeatable)", collect, [])
      .option("--uses <n>", "number of joins it admits (default 1)")
      .option("--reusable", "any number of joins until it expires")
      .option("--node <name>", "only a node of this name may join with it")
      .option(
        "--replace",
        "with --node: the join takes over that existing node (its old certificate is revoked)",
      )
      .option("-o, --output <format>", "output format: text|json", "text"),
    "protoctl node token --ttl 2h --label rack=a",
    "protoctl node token --uses 5",
    "protoctl node token --node node-2 --replace",
  ).action(
    async (
      opts: {
        ttl: string;
        label: string[];
        output: string;
        uses?: string;
        reusable?: boolean;
        node?: string;
        replace?: boolean;
      },
      self: Command,
    ) => {
      const ttlSeconds = parseDuration(opts.ttl);
      const labels = keyValues(opts.label, "label");
      if (opts.uses !== undefined && opts.reusable) {
        throw usage("give either --uses or --reusable");
      }
      const uses = opts.uses === undefined ? 0 : Number(opts.uses);
      if (opts.uses !== undefined && !(Number.isInteger(uses) && uses >= 1)) {
        throw usage(`--uses wants a whole number >= 1, not ${JSON.stringify(opts.uses)}`);
      }
      if (opts.replace && !opts.node) throw usage("--replace needs --node NAME");
      if (opts.node) name("node", opts.node);
      const api = await getApi(self);
      const tok = await api.unary(
        "createJoinToken",
        {
          ttlSeconds,
          labels,
          uses,
          reusable: !!opts.reusable,
          node: opts.node ?? "",
          replace: !!opts.replace,
        },
        { deadlineMs: 15_000 },
      );
      if (opts.output === "json") {
        process.stdout.write(
          `${JSON.stringify({ token: tok.token, expiresMs: tok.expiresMs, uses: tok.uses, node: tok.node })}\n`,
        );
      } else {
        process.stdout.write(`${tok.token}\n`);
        const uses = tok.uses ? `${tok.uses} join${tok.uses > 1 ? "s" : ""}` : "any number of joins";
        process.stderr.write(
          `valid until ${new Date(tok.expiresMs).toISOString()} for ${uses}${tok.node ? ` of node ${tok.node}` : ""}; on the new node run:\n` +
            `  protoctl agent --controller ${api.address} --join-token ${tok.token} --name ${tok.node || "NAME"}\n`,
        );
      }
    },
  );

  return examples(cmd, "protoctl node ls", "protoctl node drain node-2");
}

function usage(message: string): Error {
  return invalidArgument(message, { reason: "USAGE", hint: "see `protoctl node token --help`" });
}
