/**
 * `protoctl user add|ls|rm`: people who may use the cluster, each with a
 * certificate of their own and a role (admin, operator, viewer). `add`
 * makes the key here, has the controller sign a CSR, and writes a
 * credential file (mode 0600) that the user imports with `protoctl context
 * import FILE`. `rm` revokes the certificate on every controller replica.
 */
import { Command } from "commander";
import { invalidArgument } from "../../common/errors.js";
import type { User } from "../../proto/gen/protoctl/v1/control.js";
import type { ListSpec } from "../output/format.js";
import { currentContext, examples, getApi, listCommand, name, say } from "./common.js";

const ROLES = ["admin", "operator", "viewer"];

const userList: ListSpec<User> = {
  name: (u) => u.name,
  toJSON: (u) => ({ ...u }),
  columns: [
    { header: "NAME", get: (u) => u.name },
    { header: "ROLE", get: (u) => u.role },
    { header: "EXPIRES", get: (u) => new Date(u.expiresMs).toISOString().slice(0, 10) },
    { header: "CREATED BY", get: (u) => u.createdBy || "-", wide: true },
    { header: "SERIAL", get: (u) => u.serial, wide: true },
  ],
};

export function command(_name: string): Command {
  const cmd = new Command("user").description("users of the cluster and their roles: add, ls, rm");

  examples(
    cmd
      .command("add")
      .argument("<name>", "user name")
      .requiredOption("--role <role>", `one of ${ROLES.join(", ")}`)
      .option("--days <n>", "certificate validity in days (default 90, at most 365)")
      .option("-f, --file <path>", "where to write the credential (default ./NAME.protoctl.json)")
      .description("add a user and write their credential file"),
    "protoctl user add alice --role operator",
    "protoctl user add bob --role viewer --days 30 -f bob.json",
  ).action(async (n: string, opts: { role: string; days?: string; file?: string }, self: Command) => {
    name("user", n);
    if (!ROLES.includes(opts.role)) {
      throw invalidArgument(`unknown role ${JSON.stringify(opts.role)}`, {
        reason: "INVALID_ROLE",
        hint: `one of ${ROLES.join(", ")}`,
      });
    }
    const days = opts.days === undefined ? 0 : Number(opts.days);
    if (!Number.isInteger(days) || days < 0) {
      throw invalidArgument(`--days wants a whole number, not ${JSON.stringify(opts.days)}`, {
        reason: "USAGE",
      });
    }
    const { resolve } = await import("node:path");
    const { createCsr, generateKeyPem, writeCredentialFile } = await import("../../common/tls.js");
    const file = resolve(opts.file ?? `${n}.protoctl.json`);
    const api = await getApi(self);
    const ctx = await currentContext(self);
    const keyPem = generateKeyPem();
    const csrPem = await createCsr(keyPem, n, "user");
    const res = await api.unary(
      "addUser",
      { name: n, role: opts.role, days, csrPem },
      { deadlineMs: 15_000 },
    );
    await writeCredentialFile(file, {
      controller: api.address,
      caPem: res.caPem,
      certPem: res.certPem,
      keyPem,
      ...(ctx.serverName ? { serverName: ctx.serverName } : {}),
    });
    say(
      `user/${n} added (${opts.role}, valid until ${new Date(res.user?.expiresMs ?? 0).toISOString().slice(0, 10)}); ` +
        `credential written to ${file}: hand it over privately, then \`protoctl context import ${file}\``,
    );
  });

  listCommand(
    cmd,
    "list users",
    "protoctl user ls -o wide",
    userList,
    async (api) => (await api.unary("listUsers", {}, { deadlineMs: 15_000 })).users,
  );

  examples(
    cmd
      .command("rm")
      .alias("remove")
      .argument("<name>", "user name")
      .description("remove a user and revoke their certificate"),
    "protoctl user rm alice",
  ).action(async (n: string, _o: unknown, self: Command) => {
    name("user", n);
    const api = await getApi(self);
    await api.unary("removeUser", { name: n }, { deadlineMs: 15_000 });
    say(`user/${n} removed; its certificate is refused from now on`);
  });

  return examples(cmd, "protoctl user add alice --role operator", "protoctl user ls");
}
