/**
 * vitest globalSetup of the integration project: snapshot the machine before
 * the first test file and compare after the last one. Anything new (mount,
 * loop device, netns, root-ns interface, test-kind process, protoctl* cgroup)
 * fails the run.
 *
 * Why `process.exitCode` and not a throw: vitest 4 logs an error thrown by a
 * globalSetup teardown as "error during close" and still exits 0 (checked
 * with vitest 4.1). Setting the exit code from the teardown makes
 * `vitest run` exit 1, which test/leak/leak-check.int.test.ts verifies by
 * running a nested vitest on a file that leaks a mount.
 *
 * PROTOCTL_LEAK_CHECK=warn reports without failing (for a machine shared with
 * other work in progress); =off skips the check.
 */
import { randomBytes } from "node:crypto";
import { takeSnapshot } from "./collect.js";
import { diffSnapshots, formatLeaks, type Leak, RUN_MARKER_ENV } from "./snapshot.js";

/** Cleanups finishing in the background (a lazy umount, a dying process) get this long to settle. */
const SETTLE_MS = Number(process.env.PROTOCTL_LEAK_SETTLE_MS ?? 5000);

export default async function setup(): Promise<() => Promise<void>> {
  // Workers and everything they spawn inherit this, so processes can be traced back to this run.
  const runId = process.env[RUN_MARKER_ENV] ?? randomBytes(4).toString("hex");
  process.env[RUN_MARKER_ENV] = runId;
  const mode = process.env.PROTOCTL_LEAK_CHECK ?? "fail";
  if (mode === "off") return async () => undefined;
  const before = await takeSnapshot();

  return async () => {
    let leaks: Leak[] = [];
    const deadline = Date.now() + SETTLE_MS;
    for (;;) {
      leaks = diffSnapshots(before, await takeSnapshot(), runId);
      if (leaks.length === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    if (leaks.length === 0) {
      console.log(formatLeaks(leaks));
      return;
    }
    console.error(`\n${formatLeaks(leaks)}\n`);
    if (mode !== "warn") process.exitCode = 1;
  };
}
