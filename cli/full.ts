/**
 * The full CLI (commander, every command), run by cli/main.ts for whatever
 * its fast path does not serve. A bundle entry of its own (dist/cli/full.js,
 * cli/build/bundle.mjs), at main.js's depth so relative paths resolve alike.
 */
import { ExitCode } from "./exit-codes.js";
import { main } from "./run.js";

export function runFull(args: readonly string[]): void {
  main(args).then(
    // Daemons (agent, controller, supervise) return from their action only once stopped.
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`protoctl: ${String(err)}\n`);
      process.exit(ExitCode.FAILURE);
    },
  );
}
