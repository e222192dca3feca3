/**
 * Where each running env's copy of its PID 1 seccomp filters lives,
 * `<machines dir>/<env>.seccomp` (protoctl-enter's `-f`). The first exec into
 * a machine makes it (the helper ptrace-stops the leader for well under a
 * millisecond and copies the filters), every later exec loads it; it goes
 * when the machine's life ends, so a new life copies its own. A copy left by
 * an earlier agent process stays valid for the machine it adopts.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";

export class SeccompCopies {
  constructor(private readonly dir: string) {}

  file(env: string): string {
    return join(this.dir, `${env}.seccomp`);
  }

  /** Forgets the copy (the machine's life ended, or a new one starts). */
  drop(env: string): void {
    rmSync(this.file(env), { force: true });
  }
}
