/**
 * Each running env's copy of its PID 1 seccomp filters, `<machines dir>/<env>.seccomp`,
 * which protoctl-enter loads for every exec (`-f`). Made once per machine
 * life (ptrace-stops the leader for a few ms, off the start's critical path;
 * the first exec waits for it); a copy left by an earlier agent process is
 * reused on adopt; a failed copy is retried by the next exec, never skipped.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { dumpSeccomp } from "./enter-helper.js";

export class SeccompCopies {
  private readonly pending = new Map<string, Promise<void>>();

  constructor(private readonly dir: string) {}

  file(env: string): string {
    return join(this.dir, `${env}.seccomp`);
  }

  /** Resolves once the copy exists (made now from `leaderPid` if needed). */
  ready(env: string, leaderPid: number): Promise<void> {
    let p = this.pending.get(env);
    if (!p) {
      const file = this.file(env);
      const made = existsSync(file) ? Promise.resolve() : dumpSeccomp(leaderPid, file);
      p = made;
      made.catch(() => {
        if (this.pending.get(env) === made) this.pending.delete(env);
      });
      this.pending.set(env, p);
    }
    return p;
  }

  /** Waits for a copy under way (it ptrace-stops the leader): before a stop or an undo. */
  async settled(env: string): Promise<void> {
    await this.pending.get(env)?.catch(() => undefined);
  }

  /** Forgets the copy (the machine's life ended, or a new one starts). */
  drop(env: string): void {
    this.pending.delete(env);
    rmSync(this.file(env), { force: true });
  }
}
