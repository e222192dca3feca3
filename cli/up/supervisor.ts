/**
 * `protoctl supervise --state-dir D`: the small process `protoctl up` leaves
 * behind (detached, in its own session). It runs the children listed in
 * <state>/run/children.json with their output appended to <state>/logs/<name>.log,
 * restarts any that die (exponential backoff, reset after a minute of
 * uptime), re-reads the list on SIGHUP (`up` adds the agent once the
 * controller has issued a join token), and on SIGTERM stops the children in
 * reverse order (SIGTERM, then SIGKILL after each one's grace period).
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import type { ResultPromise } from "execa";
import { spawnProcess } from "../../common/exec.js";
import { type ChildrenFile, type ChildSpec, readJson, StatePaths } from "./state.js";

interface Running {
  spec: ChildSpec;
  proc?: ResultPromise;
  pid?: number;
  startedAt: number;
  restarts: number;
  backoffMs: number;
  timer?: NodeJS.Timeout;
  exited?: Promise<void>;
}

const MIN_BACKOFF = 500;
const MAX_BACKOFF = 30_000;
const STABLE_MS = 60_000;

export class Supervisor {
  private readonly paths: StatePaths;
  private readonly running = new Map<string, Running>();
  private stopping = false;
  private logFd: number;

  constructor(stateDir: string) {
    this.paths = new StatePaths(stateDir);
    this.logFd = openSync(this.paths.log("supervise"), "a");
  }

  log(line: string): void {
    writeSync(this.logFd, `${new Date().toISOString()} ${line}\n`);
  }

  async start(): Promise<void> {
    await writeFile(this.paths.supervisorPidFile, `${process.pid}\n`);
    this.log(`supervisor ${process.pid} started for ${this.paths.root}`);
    process.on("SIGHUP", () => void this.reload());
    process.on("SIGTERM", () => void this.stop(0));
    process.on("SIGINT", () => void this.stop(0));
    await this.reload();
  }

  /** Starts children that are listed and not running; stops those no longer listed. */
  async reload(): Promise<void> {
    if (this.stopping) return;
    const file = readJson<ChildrenFile>(this.paths.childrenFile) ?? { children: [] };
    const wanted = new Set(file.children.map((c) => c.name));
    for (const [name, r] of [...this.running].reverse()) {
      if (!wanted.has(name)) {
        this.running.delete(name);
        await this.stopChild(r);
      }
    }
    for (const spec of file.children) {
      const r = this.running.get(spec.name);
      if (!r) {
        const fresh: Running = { spec, startedAt: 0, restarts: 0, backoffMs: MIN_BACKOFF };
        this.running.set(spec.name, fresh);
        this.spawn(fresh);
      } else {
        r.spec = spec; // takes effect at the next restart
      }
    }
  }

  private spawn(r: Running): void {
    if (this.stopping) return;
    const log = { file: this.paths.log(r.spec.name), append: true } as const;
    r.startedAt = Date.now();
    const proc = spawnProcess(r.spec.command, r.spec.args, {
      stdin: "ignore",
      stdout: log,
      stderr: log,
      env: r.spec.env,
      extendEnv: true,
      buffer: false,
      reject: false,
      cleanup: false,
    });
    r.proc = proc;
    r.pid = proc.pid;
    if (r.pid) void writeFile(this.paths.pidFile(r.spec.name), `${r.pid}\n`);
    this.log(`${r.spec.name} started (pid ${r.pid ?? "?"})`);
    r.exited = proc.then(
      (res) => this.onExit(r, proc, res.exitCode, res.signal),
      (err: { exitCode?: number; signal?: string }) => this.onExit(r, proc, err.exitCode, err.signal),
    );
  }

  private onExit(
    r: Running,
    proc: ResultPromise,
    code: number | undefined,
    signal: string | undefined,
  ): void {
    if (r.proc !== proc) return;
    r.proc = undefined;
    const how = signal ? `killed by ${signal}` : `exited with ${code ?? "?"}`;
    if (this.stopping || this.running.get(r.spec.name) !== r) {
      this.log(`${r.spec.name} ${how}`);
      return;
    }
    const upFor = Date.now() - r.startedAt;
    r.backoffMs = upFor > STABLE_MS ? MIN_BACKOFF : Math.min(MAX_BACKOFF, r.backoffMs * 2);
    r.restarts++;
    this.log(
      `${r.spec.name} ${how} after ${Math.round(upFor / 1000)}s; restart #${r.restarts} in ${r.backoffMs} ms`,
    );
    r.timer = setTimeout(() => this.spawn(r), r.backoffMs);
  }

  private async stopChild(r: Running): Promise<void> {
    if (r.timer) clearTimeout(r.timer);
    const proc = r.proc;
    if (proc && r.pid) {
      this.log(`stopping ${r.spec.name} (pid ${r.pid})`);
      proc.kill("SIGTERM");
      const grace = r.spec.stopTimeoutMs ?? 10_000;
      const killer = setTimeout(() => {
        this.log(`${r.spec.name} ignored SIGTERM for ${grace} ms; SIGKILL`);
        proc.kill("SIGKILL");
      }, grace);
      await r.exited;
      clearTimeout(killer);
    }
    await rm(this.paths.pidFile(r.spec.name), { force: true });
  }

  async stop(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log("stopping children");
    for (const r of [...this.running.values()].reverse()) await this.stopChild(r);
    await rm(this.paths.supervisorPidFile, { force: true });
    this.log("supervisor exits");
    closeSync(this.logFd);
    process.exit(code);
  }
}

/** Runs until SIGTERM/SIGINT (stop() exits the process); never resolves. */
export async function runSupervisor(stateDir: string): Promise<never> {
  const s = new Supervisor(stateDir);
  await s.start();
  // Keeps the event loop alive even while every child is between restarts.
  setInterval(() => undefined, 3600_000);
  return new Promise<never>(() => undefined);
}
