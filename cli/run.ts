/**
 * The CLI's top level: build the lazily loaded command tree, run it, turn
 * whatever was thrown into an exit status and one sentence on stderr.
 */
import { readFileSync } from "node:fs";
import { ExitCode, reportFor } from "./exit-codes.js";
import { buildProgram } from "./program.js";

function cliVersion(): string {
  // dist/cli/run.js, dist/cli/chunks/*.js (bundled), cli/run.ts
  for (const rel of ["../../package.json", "../../../package.json", "../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as {
        name?: string;
        version: string;
      };
      if (pkg.name === "protoctl") return pkg.version;
    } catch {
      // try the next layout
    }
  }
  return "0.0.0";
}

/** Runs the CLI on argv (without node and script) and returns the exit status. */
export async function main(args: readonly string[]): Promise<number> {
  const debug = process.env.PROTOCTL_DEBUG === "1";
  try {
    const program = await buildProgram(args, cliVersion());
    await program.parseAsync([...args], { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : ExitCode.OK;
  } catch (err) {
    const report = reportFor(err, debug);
    if (report.lines.length) process.stderr.write(`${report.lines.join("\n")}\n`);
    return report.exitCode;
  } finally {
    const common = await import("./commands/common.js");
    common.closeApi();
  }
}
