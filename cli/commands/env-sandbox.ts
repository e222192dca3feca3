/** `protoctl env extend` (and the other sandbox commands): kept apart from env.ts to keep files small. */
import type { Command } from "commander";
import { timeLeft } from "../output/columns.js";
import { examples, getApi, name, parseDuration, say } from "./common.js";

export function addSandboxCommands(cmd: Command): void {
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
