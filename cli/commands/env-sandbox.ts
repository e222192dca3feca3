/** `protoctl env extend` (and the other sandbox commands): kept apart from env.ts to keep files small. */
import type { Command } from "commander";
import { timeLeft } from "../output/columns.js";
import { examples, getApi, name, parseDuration, say } from "./common.js";

export function addSandboxCommands(cmd: Command): void {
  examples(
    cmd
      .command("cp")
      .argument("<src>", "ENV:/path or a local path")
      .argument("<dest>", "a local path or ENV:/path")
      .description(
        "copy files or directories into or out of an environment (running or stopped); modes, owners and symlinks kept",
      ),
    "protoctl env cp ./site web:/srv",
    "protoctl env cp web:/var/log/app.log .",
  ).action(async (src: string, dest: string, _opts: unknown, self: Command) => {
    const { envCopy } = await import("./env-cp.js");
    const api = await getApi(self);
    const r = await envCopy(api, src, dest);
    say(`copied ${r.entries} entries (${r.bytes} bytes)`);
  });

  examples(
    cmd
      .command("extend")
      .argument("<name>", "env name")
      .argument("<duration>", "how much longer, e.g. 1h or 30m")
      .description("push back an environment's expiry (created with --ttl)"),
    "protoctl env extend demo 1h",
  ).action(async (n: string, by: string, _opts: unknown, self: Command) => {
    name("env", n);
    const byMs = parseDuration(by) * 1000;
    const api = await getApi(self);
    const env = await api.unary("extendEnv", { name: n, byMs });
    say(`env/${n} expires in ${timeLeft(env.spec?.expiresMs)}`);
  });
}
