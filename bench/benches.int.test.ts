/**
 * Every bench runs (issue 17 item 7): each one's quickest form through
 * `node bench/run.mjs`, exactly as `npm run bench -- NAME` runs it after the
 * install script (dist built, .ts benches run compiled). A bench that
 * crashes prints no final JSON line; one that runs prints it, with "ok"
 * saying whether its target was met — not asserted here: small sizes on a
 * shared machine measure nothing, this only proves the bench works.
 *
 * Not seconds: even the quick forms set up what they measure (etcd, a
 * controller, agents in namespaces, pools). Measured on a 2-core machine
 * shared with other work (load ~20): cli-startup 26 s, env-create 231 s,
 * propagate 157 s, propagate-fleet 253 s, schedule 195 s; lab-up 62 s alone,
 * over 280 s under that load.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { expect, it } from "vitest";
import { listBenches } from "./run.mjs";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** The quickest form of each bench. A new bench without one here fails the first test. */
const QUICK: Record<string, string[]> = {
  "cli-cycle": ["--rounds", "1"],
  "cli-exec": ["--runs", "2"],
  "cli-startup": ["--runs", "3"],
  "env-create": ["--runs", "2", "--concurrent", "2", "--rounds", "1", "--hold", "1"],
  faults: ["--envs", "6", "--cases", "leader-kill"],
  "lab-up": ["--runs", "1", "--machines", "2"],
  "layer-rebuild": ["--quick"],
  "pool-latency": ["--runs", "3"],
  propagate: ["--runs", "1", "--small", "8", "--large", "16"],
  "propagate-fleet": ["--nodes", "2", "--small", "8", "--large", "16", "--no-fanout"],
  schedule: ["--nodes", "3", "--envs", "40"],
};

it("knows a quick form of every bench", () => {
  expect(listBenches(ROOT).sort()).toEqual(Object.keys(QUICK).sort());
});

for (const [name, args] of Object.entries(QUICK)) {
  it(`bench ${name} runs and reports`, { timeout: 600_000 }, async () => {
    const r = await execa(process.execPath, [join(ROOT, "bench/run.mjs"), name, ...args], {
      cwd: ROOT,
      reject: false,
      all: false,
      timeout: 580_000,
      env: { ...process.env, PROTOCTL_TEST_LOG: "" },
    });
    const last = r.stdout.trim().split("\n").at(-1) ?? "";
    let report: Record<string, unknown> | undefined;
    try {
      report = JSON.parse(last) as Record<string, unknown>;
    } catch {
      report = undefined;
    }
    // exit 0 (target met) or 1 (missed) with a report; anything else is a broken bench
    expect(report, `bench ${name} printed no report; stderr: ${r.stderr.slice(-2000)}`).toBeDefined();
    expect(typeof report!.ok).toBe("boolean");
    expect([0, 1]).toContain(r.exitCode);
  });
}
