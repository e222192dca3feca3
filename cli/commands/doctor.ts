/**
 * `protoctl doctor`: checks this host for what the agent and the controller
 * need (common/host-checks.ts) and prints one row per check with what fixes a
 * failure. Exit 1 when a required check fails; optional ones only warn.
 */
import { Command, Option } from "commander";
import {
  type HostCheck,
  type HostCheckOptions,
  requiredOk,
  runHostChecks,
} from "../../common/host-checks.js";
import { DEFAULT_STATE_DIR } from "../up/state.js";

export interface DoctorOptions extends HostCheckOptions {
  /** The `up` state dir whose control plane to judge, and the CLI context (cli/up/security-checks.ts); none: skipped. */
  stateDir?: string;
  output?: "table" | "json";
  /** Where to print; default process.stdout. */
  write?: (text: string) => void;
}

function status(c: HostCheck): string {
  if (c.ok) return "ok";
  return c.required ? "MISSING" : "warn";
}

/** An aligned table: CHECK STATUS VERSION DETAIL FIX. */
export function renderDoctorTable(checks: readonly HostCheck[]): string {
  const rows = [
    ["CHECK", "STATUS", "VERSION", "DETAIL", "FIX"],
    ...checks.map((c) => [c.name, status(c), c.version ?? "", c.detail, c.fix]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
  const failed = checks.filter((c) => !c.ok && c.required).length;
  const warned = checks.filter((c) => !c.ok && !c.required).length;
  lines.push(
    "",
    failed === 0
      ? `all required checks passed${warned ? ` (${warned} optional missing)` : ""}`
      : `${failed} required check(s) failed: run the FIX column's commands, then protoctl doctor again`,
  );
  return `${lines.join("\n")}\n`;
}

/** Runs the checks, prints them, and returns the exit code (0 ok, 1 a required check failed). */
export async function runDoctor(opts: DoctorOptions = {}): Promise<number> {
  const write = opts.write ?? ((t: string) => process.stdout.write(t));
  const checks = [
    ...(await runHostChecks(opts)),
    ...(opts.stateDir !== undefined ? await securityChecks(opts.stateDir) : []),
  ];
  const ok = requiredOk(checks);
  if (opts.output === "json") {
    write(`${JSON.stringify({ ok, checks }, null, 2)}\n`);
  } else {
    write(renderDoctorTable(checks));
  }
  return ok ? 0 : 1;
}

/** Control-plane rows: the local `up` (when its state is readable) and the current CLI context. */
async function securityChecks(stateDir: string): Promise<HostCheck[]> {
  const { contextCheck, upStateChecks } = await import("../up/security-checks.js");
  const { loadCliConfig, resolveContext } = await import("../config/contexts.js");
  const ctx = await loadCliConfig()
    .then((cfg) => resolveContext(cfg, undefined, process.env))
    .catch(() => undefined);
  return [...upStateChecks(stateDir), ...contextCheck(ctx)];
}

export function doctorCommand(): Command {
  return new Command("doctor")
    .description(
      "check this host for what protoctl needs (kernel, tools, privileges, memory) and report a weakened control plane",
    )
    .addOption(
      new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"),
    )
    .option("--no-vxlan-probe", "skip creating a scratch vxlan link")
    .option(
      "--state-dir <dir>",
      "judge the control plane of the `protoctl up` there (env: PROTOCTL_STATE_DIR)",
      process.env.PROTOCTL_STATE_DIR || DEFAULT_STATE_DIR,
    )
    .addHelpText(
      "after",
      "\nExit status 0 when every required check passes, 1 otherwise.\n\nExamples:\n  $ protoctl doctor\n  $ protoctl doctor -o json\n",
    )
    .action(async (o: { output: "table" | "json"; vxlanProbe: boolean; stateDir: string }) => {
      process.exitCode = await runDoctor({
        output: o.output,
        probeVxlan: o.vxlanProbe,
        stateDir: o.stateDir,
      });
    });
}
