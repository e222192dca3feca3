/**
 * Pre-joined exec slots: a process that has already moved itself into an
 * env's cgroups and waits for the argv of the next exec.
 *
 * Why: moving a process into a cgroup (a write to cgroup.procs) takes the
 * kernel's cgroup_threadgroup_rwsem for writing, and the first such write
 * after a quiet spell waits for an RCU grace period: measured 7-15 ms here
 * (2 cores, loaded), against ~2 ms for a write right after another one. Every
 * exec must join the env's cgroups (limits hold for exec'd processes too), so
 * without slots every exec a few seconds apart pays that wait on its
 * critical path. A slot pays it in the background: one is spawned at machine
 * start (alongside nspawn's own join, so both share one grace period) and a
 * new one after each exec that used one; an idle slot ends after
 * `SLOT_IDLE_MS`, so a quiet env holds no extra process.
 *
 * The slot is `bash` running a fixed script: it writes its pid to each
 * cgroup.procs file given as an argument, then reads the command as
 * NUL-separated words from fd 3 (a socket pair with the agent) and execs it
 * with stdin/stdout/stderr already connected to the agent. User data only
 * ever travels as those words, never as shell text. bash because `mapfile -d ""`
 * reads NUL-separated words; dash cannot.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import type { Socket } from "node:net";
import { spawnDirect } from "../../../common/exec.js";

export const SLOT_SHELL = "/bin/bash";
/** An unused slot ends after this long (the agent kills it). */
export const SLOT_IDLE_MS = 30_000;

/** Fixed text; the cgroup.procs paths arrive as $@, the command on fd 3. */
export const EXEC_SLOT_SCRIPT =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: bash text, not a template
  'for f in "$@"; do echo $$ > "$f" || exit 125; done; mapfile -d "" -t -u 3 a; exec 3<&-; [ "${#a[@]}" -gt 0 ] || exit 0; exec "${a[@]}"';

/** True when the host has the slot shell (else execs join their cgroups on the critical path). */
export function slotsSupported(): boolean {
  return existsSync(SLOT_SHELL);
}

/** The words written to a slot: each followed by NUL. Words must not hold NUL themselves. */
export function encodeArgv(argv: readonly string[]): Buffer {
  for (const w of argv) if (w.includes("\0")) throw new Error("argv words cannot hold NUL bytes");
  return Buffer.from(argv.map((w) => `${w}\0`).join(""));
}

export class ExecSlot {
  readonly child: ChildProcess;
  private readonly idle: NodeJS.Timeout;
  private used = false;

  constructor(procsFiles: string[], env: Record<string, string>, onIdle: (slot: ExecSlot) => void) {
    // --norc: with stdin a socket, Debian's bash would take itself for an rshd child and read ~/.bashrc
    this.child = spawnDirect(
      SLOT_SHELL,
      ["--norc", "--noprofile", "-c", EXEC_SLOT_SCRIPT, "protoctl-slot", ...procsFiles],
      {
        stdio: ["pipe", "pipe", "pipe", "pipe"],
        env,
      },
    );
    // a failed spawn shows as an exit; callers check alive() before use
    this.child.on("error", () => undefined);
    this.idle = setTimeout(() => onIdle(this), SLOT_IDLE_MS);
    this.idle.unref();
  }

  /** Not yet used and still waiting. */
  alive(): boolean {
    return !this.used && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Hands the slot its command; it execs it at once (or once its cgroup join completes). */
  launch(argv: readonly string[]): ChildProcess {
    this.used = true;
    clearTimeout(this.idle);
    const control = this.child.stdio[3] as Socket;
    control.on("error", () => undefined);
    control.end(encodeArgv(argv));
    return this.child;
  }

  /** Ends an unused slot. */
  discard(): void {
    clearTimeout(this.idle);
    if (this.used) return;
    this.used = true;
    try {
      this.child.kill("SIGKILL");
    } catch {
      // gone already
    }
    for (const s of this.child.stdio) s?.destroy();
  }
}
