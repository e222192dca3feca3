/**
 * `protoctl console`: prints the web console's sign-in URL (the controller's
 * console address with a short-lived token signed by this context's key in
 * the fragment) and opens it in a browser when there is a display.
 */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { failedPrecondition, invalidArgument } from "../../common/errors.js";
import { currentContext, examples, getApi, parseDuration } from "./common.js";

export function command(_name: string): Command {
  const cmd = new Command("console")
    .description("print (and open) a sign-in link to the controller's web console")
    .option("--no-open", "only print the link, do not start a browser")
    .option("--ttl <duration>", "how long the link signs in (at most 1h)", "5m")
    .action(async (o: { open: boolean; ttl: string }, self: Command) => {
      const ttl = parseDuration(o.ttl);
      if (ttl <= 0 || ttl > 3600)
        throw invalidArgument(`--ttl ${o.ttl} is out of range`, { reason: "INVALID_FLAG", hint: "1s to 1h" });
      const ctx = await currentContext(self);
      const certPem = ctx.certData ?? (ctx.cert ? readFileSync(ctx.cert, "utf8") : "");
      const keyPem = ctx.keyData ?? (ctx.key ? readFileSync(ctx.key, "utf8") : "");
      if (ctx.insecure || !certPem || !keyPem) {
        throw failedPrecondition(
          `context ${ctx.name} has no client certificate: the console signs in with one`,
          {
            reason: "NO_CREDENTIALS",
            hint: "use a context with a user credential (`protoctl user add`, or the one `protoctl up` writes)",
          },
        );
      }
      const api = await getApi(self);
      const v = await api.unary("getVersion", {}, { deadlineMs: 5000 });
      if (!v.consoleUrl) {
        throw failedPrecondition(`the controller ${v.controller} serves no web console`, {
          reason: "CONSOLE_OFF",
          hint: "start the controller with --console-listen HOST:PORT (protoctl up turns it on)",
        });
      }
      const { makeConsoleToken } = await import("../../common/console-token.js");
      const token = makeConsoleToken({ certPem, keyPem, cluster: v.cluster }, Date.now(), ttl);
      const url = `${v.consoleUrl}#token=${token}`;
      process.stdout.write(`${url}\n`);
      if (o.open && process.stdout.isTTY && (process.env.DISPLAY || process.env.WAYLAND_DISPLAY)) {
        const { spawnProcess } = await import("../../common/exec.js");
        const child = spawnProcess("xdg-open", [url], { detached: true, stdio: "ignore", reject: false });
        child.catch(() => undefined);
        child.unref();
      }
    });
  return examples(cmd, "protoctl console", "protoctl console --no-open --ttl 1m");
}
