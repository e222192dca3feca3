/**
 * Runs one test file in a nested `vitest run` with the leak check as its
 * globalSetup, the way the integration project runs (PROTOCTL_LEAK_CHECK=fail):
 * the leak-check tests prove with it that a leak really fails a run.
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dirname, "../..");

/** Writes `testFile` (plain JS) into `dir` as its only test, runs it, returns the exit code and all output. */
export async function nestedVitestRun(
  dir: string,
  testFile: string,
  testTimeoutMs = 10_000,
): Promise<{ code: number | null; out: string }> {
  await writeFile(
    join(dir, "vitest.config.mjs"),
    `export default { test: { include: ["*.int.test.mjs"], globals: true, testTimeout: ${testTimeoutMs}, globalSetup: [${JSON.stringify(
      join(REPO, "test/leak/global-setup.ts"),
    )}] } };\n`,
  );
  await writeFile(join(dir, "leak.int.test.mjs"), testFile);
  const child = spawn(
    process.execPath,
    [join(REPO, "node_modules/vitest/vitest.mjs"), "run", "--root", dir],
    {
      cwd: dir,
      env: {
        ...process.env,
        PROTOCTL_LEAK_CHECK: "fail",
        PROTOCTL_LEAK_SETTLE_MS: "300",
        CI: "true",
        NO_COLOR: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  return { code, out };
}
