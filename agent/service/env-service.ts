/**
 * Environments on this node: the business logic between AgentService and the
 * host drivers (pool for roots, machines for nspawn, networks for veths).
 *
 * Create = resolve base → pool.prepareEnvRoot → write hostname/hosts/files →
 * (start) → record. Every step registers its undo, and the record is written
 * last, so a failed or killed create leaves nothing a restart would keep: the
 * startup inventory (`init`) stops machines without a record and lets the
 * pool remove roots without one.
 */

import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { baseRefOf } from "../../common/base-ref.js";
import { alreadyExists, failedPrecondition, notFound, ProtoctlError } from "../../common/errors.js";
import { KeyedLock } from "../../common/keyed-lock.js";
import { validateName } from "../../common/names.js";
import { Revert } from "../../common/revert.js";
import { writeFileInRoot } from "../../common/root-path.js";
import {
  type BaseVersion,
  type Env,
  EnvPhase,
  EnvSpec,
  type ExecStart,
} from "../../proto/gen/protoctl/v1/types.js";
import type { ExecSession, MachineDriver, PoolDriver } from "../host/interfaces.js";
import { drainAfterExit } from "../host/machines/exec-session.js";
import { MACHINES_CAPABILITY, machinesProblem } from "../host/machines/host-check.js";
import { subvolumeUsage } from "../host/pool/disk-limit.js";
import type { QgroupUsage } from "../host/pool/parsers.js";
import {
  filePath,
  hostsFile,
  machineLimits,
  machineNetwork,
  machineSpec,
  validateEnvSpec,
} from "./env-spec-check.js";
import { type EnvRecord, EnvStore } from "./env-store.js";
import type { ForegroundActivity } from "./foreground.js";
import { unsealed } from "./seal-fields.js";

export interface EnvServiceOptions {
  node: string;
  stateDir: string;
  pool: PoolDriver;
  machines: MachineDriver;
  logger: Logger;
  /** Graceful stop period used by delete. */
  deleteStopTimeoutMs?: number;
  /** Creates count as foreground work here (background publishes wait for a quiet moment). */
  activity?: ForegroundActivity;
}

const PHASES: Record<EnvRecord["phase"], EnvPhase> = {
  created: EnvPhase.ENV_PHASE_CREATED,
  running: EnvPhase.ENV_PHASE_RUNNING,
  stopped: EnvPhase.ENV_PHASE_STOPPED,
  failed: EnvPhase.ENV_PHASE_FAILED,
};

export class EnvService {
  private readonly store: EnvStore;
  private readonly records = new Map<string, EnvRecord>();
  /** Names being created right now (no record yet). */
  /** Creates in progress: the spec (as JSON) and the outcome, so the same create again joins it. */
  private readonly creating = new Map<string, { spec: string; done: Promise<Env> }>();
  private readonly locks = new KeyedLock();
  private readonly events = new EventEmitter();
  private readonly log: Logger;

  constructor(private readonly opts: EnvServiceOptions) {
    this.store = new EnvStore(opts.stateDir);
    this.log = opts.logger.child({ service: "envs" });
    this.events.setMaxListeners(0);
  }

  /**
   * Startup inventory: re-adopt running machines, reload records, stop and
   * drop machines that belong to no env, remount env roots, and let the pool
   * remove everything half-made.
   */
  async init(): Promise<{ adopted: number; removed: string[] }> {
    const machines = await this.opts.machines.adopt();
    for (const rec of this.store.loadAll()) this.records.set(rec.spec.name, rec);
    const removed: string[] = [];
    for (const m of machines) {
      if (this.records.has(m.name)) continue;
      if (m.running) await this.opts.machines.stop(m.name, { timeoutMs: 0, force: true });
      await this.opts.machines.cleanup(m.name);
      removed.push(`machine:${m.name}`);
    }
    for (const rec of this.records.values()) {
      try {
        const root = await this.opts.pool.openEnvRoot(rec.spec.name);
        if (!root) {
          rec.phase = "failed";
          rec.message = "the env's root is gone from the pool";
        } else rec.rootDir = root.rootDir;
      } catch (err) {
        rec.phase = "failed";
        rec.message = `cannot reopen the env's root: ${(err as Error).message}`;
      }
    }
    removed.push(...(await this.opts.pool.cleanOrphans(new Set(this.records.keys()))));
    const adopted = machines.filter((m) => m.running && this.records.has(m.name)).length;
    this.log.info({ envs: this.records.size, adopted, removed }, "env inventory done");
    return { adopted, removed };
  }

  /** The env's root directory on this host (running or stopped), for `env cp`. */
  rootDirOf(name: string): string {
    const rec = this.require(name);
    if (!rec.rootDir)
      throw failedPrecondition(`env ${name} has no filesystem yet`, {
        reason: "ENV_NO_ROOT",
        subject: `env/${name}`,
      });
    return rec.rootDir;
  }

  private require(name: string): EnvRecord {
    validateName("env", name);
    const rec = this.records.get(name);
    if (!rec) {
      throw notFound(`env ${name} not found on node ${this.opts.node}`, {
        reason: "ENV_NOT_FOUND",
        subject: `env/${name}`,
        hint: "see `protoctl env ls`",
      });
    }
    return rec;
  }

  private async toEnv(rec: EnvRecord): Promise<Env> {
    const m = await this.opts.machines.state(rec.spec.name);
    let phase = PHASES[rec.phase];
    if (m.running) phase = EnvPhase.ENV_PHASE_RUNNING;
    else if (rec.phase === "running") phase = EnvPhase.ENV_PHASE_STOPPED;
    const net = machineNetwork(rec.spec);
    const asked = (net.links ?? [net]).flatMap((l) => (l.address ? [l.address.split("/")[0]!] : []));
    // a private env that named no address got one from the node's range at start: report that one
    const addresses = asked.length > 0 || !m.running ? asked : (m.addresses ?? []);
    return {
      spec: rec.spec,
      status: {
        phase,
        node: this.opts.node,
        message: rec.message,
        reasons: [],
        createdMs: rec.createdMs,
        startedMs: m.running ? (m.startedMs ?? rec.startedMs) : rec.startedMs,
        baseVersion: rec.baseVersion,
        leaderPid: m.running ? (m.leaderPid ?? 0) : 0,
        addresses,
        generation: rec.generation,
      },
    };
  }

  private async emit(rec: EnvRecord): Promise<Env> {
    const env = await this.toEnv(rec);
    this.events.emit("env", env);
    return env;
  }

  /** Creates an env (and starts it when spec.start). Same spec again: returns the env as is. */
  async create(input: EnvSpec, generation = 0): Promise<Env> {
    const spec = validateEnvSpec(EnvSpec.fromPartial(input));
    const name = spec.name;
    const json = JSON.stringify(EnvSpec.toJSON(spec));
    const existing = this.records.get(name);
    if (existing) {
      if (JSON.stringify(EnvSpec.toJSON(existing.spec)) === json) return this.toEnv(existing);
      throw inUse(name);
    }
    // The same create while the first is still running (a new leader repeating a placement its
    // dead predecessor had sent) waits for that one: it is the same env, not a name clash.
    const inFlight = this.creating.get(name);
    if (inFlight) {
      if (inFlight.spec !== json) throw inUse(name);
      return inFlight.done;
    }
    const act = this.opts.activity;
    const done = this.locks.run(name, () =>
      act ? act.run(() => this.doCreate(spec, generation)) : this.doCreate(spec, generation),
    );
    this.creating.set(name, { spec: json, done });
    try {
      return await done;
    } finally {
      this.creating.delete(name);
    }
  }

  private async doCreate(spec: EnvSpec, generation: number): Promise<Env> {
    const name = spec.name;
    const { pool, machines } = this.opts;
    const t0 = performance.now();
    const meta = await pool.getBaseVersion(spec.base!.name, spec.base!.version);
    return Revert.run(async (r) => {
      if (spec.start) {
        r.add(async () => {
          await machines.stop(name, { timeoutMs: 0, force: true }).catch(() => undefined);
          await machines.cleanup(name);
        });
        // cgroups and the first exec slot get ready while the root is snapshotted
        machines.prewarm?.(name, machineLimits(spec));
      }
      const root = await pool.prepareEnvRoot(name, meta.base, meta.version, spec.layers, {
        diskBytes: spec.resources?.diskBytes || 0,
      });
      r.add(() => pool.removeEnvRoot(name));
      const t1 = performance.now();
      await this.writeEnvFiles(root.rootDir, spec);
      const t2 = performance.now();
      const now = Date.now();
      const rec: EnvRecord = {
        spec,
        phase: "created",
        message: "",
        createdMs: now,
        startedMs: 0,
        baseVersion: meta.version,
        generation,
        rootDir: root.rootDir,
      };
      if (spec.start) await this.startMachine(rec);
      const t3 = performance.now();
      const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
      this.log.info(
        {
          env: name,
          base: baseRefOf(meta),
          timing: { rootMs: ms(t0, t1), filesMs: ms(t1, t2), startMs: ms(t2, t3) },
        },
        "env created",
      );
      this.store.save(rec);
      this.records.set(name, rec);
      r.add(() => {
        this.records.delete(name);
        this.store.remove(name);
      });
      return this.emit(rec);
    });
  }

  /**
   * hostname, hosts and the spec's files, written into the root before the machine runs.
   * Asynchronously on purpose: the root may sit on an attached seed's sprout, which hydration
   * freezes for a moment (loop.ts withFrozen); a synchronous write there would block the event
   * loop that has to run the thaw, and the agent would hang for good (seen in bench/propagate).
   */
  private async writeEnvFiles(rootDir: string, spec: EnvSpec): Promise<void> {
    const hostname = spec.hostname || spec.name;
    const net = machineNetwork(spec);
    await this.writeInRoot(rootDir, "etc/hostname", Buffer.from(`${hostname}\n`), 0o644);
    await this.writeInRoot(rootDir, "etc/hosts", Buffer.from(hostsFile(hostname, net.hosts ?? {})), 0o644);
    for (const f of spec.files) await this.writeInRoot(rootDir, filePath(f.path), f.content, f.mode || 0o644);
  }

  /**
   * Writes a file under the env's root, resolved inside it (root-path.ts): a
   * symlink from the base, an import or another node is followed only within
   * the root, and one in the last component is replaced, never written through.
   */
  private async writeInRoot(rootDir: string, rel: string, data: Uint8Array, mode: number): Promise<void> {
    await writeFileInRoot(rootDir, rel, data, mode & 0o7777);
  }

  private async startMachine(rec: EnvRecord): Promise<void> {
    const spec = rec.spec;
    const st = await this.opts.machines.start(machineSpec(spec, rec.rootDir));
    rec.phase = "running";
    rec.startedMs = st.startedMs ?? Date.now();
    rec.message = "";
    for (const cmd of spec.startup) {
      const s = await this.opts.machines.exec({
        name: spec.name,
        command: ["/bin/sh", "-c", cmd],
        tty: false,
      });
      const out: Buffer[] = [];
      s.stdout.on("data", (b: Buffer) => out.push(b));
      s.stderr?.on("data", (b: Buffer) => out.push(b));
      s.stdin.end();
      const code = await drainAfterExit(s);
      if (code !== 0) {
        throw failedPrecondition(`startup command of env ${spec.name} exited with ${code}`, {
          reason: "STARTUP_FAILED",
          subject: `env/${spec.name}`,
          output: Buffer.concat(out).toString("utf8"),
          metadata: { command: cmd, exitCode: String(code) },
        });
      }
    }
  }

  async start(name: string): Promise<Env> {
    return this.locks.run(name, async () => {
      const rec = this.require(name);
      if ((await this.opts.machines.state(name)).running) return this.toEnv(rec);
      if (rec.phase === "failed" && !rec.rootDir)
        throw failedPrecondition(`env ${name} is broken: ${rec.message}`);
      try {
        await this.startMachine(rec);
      } catch (err) {
        await this.opts.machines.stop(name, { timeoutMs: 0, force: true }).catch(() => undefined);
        rec.phase = "failed";
        rec.message = (err as Error).message;
        this.store.save(rec);
        await this.emit(rec);
        throw err;
      }
      this.store.save(rec);
      return this.emit(rec);
    });
  }

  async stop(name: string, opts: { timeoutMs?: number; force?: boolean } = {}): Promise<Env> {
    return this.locks.run(name, async () => {
      const rec = this.require(name);
      if ((await this.opts.machines.state(name)).running) {
        await this.opts.machines.stop(name, { timeoutMs: opts.timeoutMs || 10_000, force: opts.force });
      }
      rec.phase = "stopped";
      this.store.save(rec);
      return this.emit(rec);
    });
  }

  async delete(name: string): Promise<void> {
    await this.locks.run(name, async () => {
      const rec = this.require(name);
      const { machines, pool } = this.opts;
      if ((await machines.state(name)).running) {
        await machines.stop(name, { timeoutMs: this.opts.deleteStopTimeoutMs ?? 5000 });
      }
      await machines.cleanup(name);
      await pool.removeEnvRoot(name);
      this.store.remove(name);
      this.records.delete(name);
      const env = await this.toEnv({ ...rec, phase: "stopped" });
      env.status!.phase = EnvPhase.ENV_PHASE_DELETING;
      this.events.emit("env", env);
      this.events.emit("deleted", name);
    });
  }

  async get(name: string): Promise<Env> {
    return this.toEnv(this.require(name));
  }

  async list(): Promise<Env[]> {
    const out: Env[] = [];
    for (const rec of [...this.records.values()].sort((a, b) => a.spec.name.localeCompare(b.spec.name))) {
      out.push(await this.toEnv(rec));
    }
    return out;
  }

  /** Names of the envs this node holds. */
  names(): string[] {
    return [...this.records.keys()];
  }

  /** Calls `fn` with every env change until the returned function is called. */
  watch(fn: (env: Env) => void): () => void {
    this.events.on("env", fn);
    return () => this.events.off("env", fn);
  }

  /** An exec session's exit code, once its output has drained (the exec stream ends after it). */
  exitOf(session: ExecSession): Promise<number> {
    return drainAfterExit(session);
  }

  /** Live disk usage of an env's root (two btrfs commands); undefined when unknown. */
  async diskUsage(name: string): Promise<QgroupUsage | undefined> {
    const root = this.rootDirOf(name);
    return subvolumeUsage(root, root).catch(() => undefined);
  }

  /** Whether machines can run here: the capability's name and the problem (undefined: none). */
  async machinesCheck(): Promise<{ name: string; problem: string | undefined }> {
    return { name: MACHINES_CAPABILITY, problem: await machinesProblem() };
  }

  async exec(start: ExecStart): Promise<ExecSession> {
    const rec = this.require(start.env);
    for (const k of Object.keys(start.envVars)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) {
        throw new ProtoctlError(3, `invalid environment variable name ${JSON.stringify(k)}`, {
          reason: "INVALID_ENV",
        });
      }
    }
    const command = start.command.length > 0 ? start.command : ["/bin/sh", ...(start.login ? ["-l"] : [])];
    return this.opts.machines.exec({
      name: rec.spec.name,
      command,
      tty: start.tty,
      env: start.envVars,
      workdir: start.workdir || undefined,
      rows: start.rows || undefined,
      cols: start.cols || undefined,
      user: start.user || undefined,
    });
  }

  logs(name: string, opts: { follow: boolean; tailLines?: number; signal?: AbortSignal }) {
    this.require(name);
    return this.opts.machines.logs(name, opts);
  }

  async snapshot(name: string, asBase: string): Promise<BaseVersion> {
    this.require(name);
    validateName("base", asBase);
    const meta = await this.opts.pool.snapshotEnvAsBase(name, asBase);
    return {
      base: meta.base,
      version: meta.version,
      source: meta.source,
      createdMs: meta.createdMs,
      recipeDigest: meta.recipeDigest,
      sizeBytes: meta.sizeBytes,
      state: 1,
      nodes: [this.opts.node],
      users: [],
      parent: meta.parent ?? "",
      ...unsealed(),
    };
  }
}

function inUse(name: string): ProtoctlError {
  return alreadyExists(`env ${name} already exists`, {
    reason: "NAME_IN_USE",
    subject: `env/${name}`,
    hint: "pick another name or delete the env first",
  });
}
