/**
 * MachineDriver in memory: machines are records, execs answer from a small
 * command table (echo, true, false, `sh -c "exit N"`, or a handler the test
 * sets). It refuses what the nspawn driver refuses (test/contracts/
 * machine-contract.ts holds both to the same behaviour).
 */
import { existsSync } from "node:fs";
import { PassThrough } from "node:stream";
import type {
  ExecRequest,
  ExecSession,
  MachineDriver,
  MachineLimits,
  MachineSpec,
  MachineState,
} from "../../agent/host/machines/machine-driver.js";
import { failedPrecondition, invalidArgument, notFound } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import { FaultPlan } from "./fault-plan.js";

export interface ExecReply {
  stdout?: string;
  stderr?: string;
  code: number;
}

type Op = "start" | "stop" | "exec" | "cleanup" | "adopt" | "prewarm";

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

interface FakeMachine {
  spec: MachineSpec;
  state: MachineState;
}

export class FakeMachines implements MachineDriver {
  readonly faults = new FaultPlan<Op>();
  /** Answers execs before the built-in table; return undefined to fall through. */
  onExec?: (req: ExecRequest) => ExecReply | undefined;
  /** Limits this fake host cannot enforce (like a missing cgroup controller). */
  unenforceable = new Set<keyof MachineLimits>();
  private readonly machines: Map<string, FakeMachine>;
  private readonly prewarmed = new Set<string>();
  private nextPid = 1000;

  /** `shared`: another instance's records, to act as the same host after an agent restart. */
  constructor(shared?: FakeMachines) {
    this.machines = shared ? shared.machines : new Map();
  }

  /** The spec a machine was last started with. */
  specOf(name: string): MachineSpec | undefined {
    return this.machines.get(name)?.spec;
  }

  /** Envs with cgroups prepared by prewarm and not yet started or cleaned up. */
  prewarmedNames(): string[] {
    return [...this.prewarmed];
  }

  /** Ends a machine as if its PID 1 exited on its own. */
  crash(name: string, exitCode = 1): void {
    const m = this.machines.get(name);
    if (m) m.state = { name, running: false, startedMs: m.state.startedMs, exitCode };
  }

  prewarm(name: string, limits: MachineLimits): void {
    validateName("env", name);
    this.checkLimits(name, limits);
    this.faults.hit("prewarm", name);
    this.prewarmed.add(name);
  }

  async start(spec: MachineSpec): Promise<MachineState> {
    validateName("env", spec.name);
    const existing = this.machines.get(spec.name);
    if (existing?.state.running) return { ...existing.state };
    for (const k of Object.keys(spec.env)) {
      if (!ENV_KEY.test(k)) throw invalidArgument(`invalid environment variable name ${JSON.stringify(k)}`);
    }
    this.checkLimits(spec.name, spec.limits);
    const net = spec.network;
    if ((net.ports?.length ?? 0) > 0 && net.mode !== "private" && net.mode !== "bridge") {
      throw invalidArgument("port forwards need a private or bridge network", {
        reason: "PORTS_NEED_NETWORK",
      });
    }
    this.prewarmed.delete(spec.name);
    this.faults.hit("start", spec.name);
    if (!existsSync(spec.rootDir)) {
      throw failedPrecondition(`machine ${spec.name} exited during start`, {
        reason: "MACHINE_START_FAILED",
        subject: `env/${spec.name}`,
        output: `Directory ${spec.rootDir} doesn't exist`,
      });
    }
    const pid = this.nextPid++;
    const state: MachineState = {
      name: spec.name,
      running: true,
      leaderPid: pid,
      nspawnPid: pid + 100_000,
      startedMs: Date.now(),
    };
    this.machines.set(spec.name, { spec, state });
    return { ...state };
  }

  private checkLimits(name: string, limits: MachineLimits): void {
    const missing = (Object.keys(limits) as Array<keyof MachineLimits>).filter(
      (k) => limits[k] !== undefined && this.unenforceable.has(k),
    );
    if (missing.length === 0) return;
    throw failedPrecondition(`this node cannot enforce ${missing.join(", ")}`, {
      reason: "LIMITS_UNENFORCEABLE",
      subject: `env/${name}`,
    });
  }

  async stop(name: string, _opts: { timeoutMs: number; force?: boolean }): Promise<MachineState> {
    const m = this.machines.get(name);
    if (!m)
      throw notFound(`no machine for env ${name}`, { reason: "MACHINE_NOT_FOUND", subject: `env/${name}` });
    this.faults.hit("stop", name);
    m.state = { name, running: false, startedMs: m.state.startedMs, exitCode: m.state.exitCode };
    return { ...m.state };
  }

  async state(name: string): Promise<MachineState> {
    const m = this.machines.get(name);
    return m ? { ...m.state } : { name, running: false };
  }

  async list(): Promise<MachineState[]> {
    return [...this.machines.values()].map((m) => ({ ...m.state }));
  }

  async exec(req: ExecRequest): Promise<ExecSession> {
    const m = this.machines.get(req.name);
    if (!m?.state.running) {
      throw failedPrecondition(`env ${req.name} is not running`, {
        reason: "ENV_NOT_RUNNING",
        subject: `env/${req.name}`,
      });
    }
    if (req.command.length === 0 || req.command[0] === "") throw invalidArgument("exec needs a command");
    for (const k of Object.keys(req.env ?? {})) {
      if (!ENV_KEY.test(k)) throw invalidArgument(`invalid environment variable name ${JSON.stringify(k)}`);
    }
    const workdir = req.workdir || "/";
    if (!workdir.startsWith("/")) throw invalidArgument("workdir must be an absolute path");
    this.faults.hit("exec", req.name);
    const reply = this.onExec?.(req) ?? builtin(req.command);
    return session(reply, req.tty);
  }

  async *logs(
    name: string,
    _opts: { follow: boolean; tailLines?: number; signal?: AbortSignal },
  ): AsyncIterable<{ stream: string; data: Buffer; timeMs: number }> {
    const m = this.machines.get(name);
    if (m) yield { stream: "stdout", data: Buffer.from(`fake console of ${name}\n`), timeMs: Date.now() };
  }

  async adopt(): Promise<MachineState[]> {
    this.faults.hit("adopt");
    return this.list();
  }

  async cleanup(name: string): Promise<void> {
    this.faults.hit("cleanup", name);
    this.prewarmed.delete(name);
    const m = this.machines.get(name);
    if (m?.state.running) {
      throw failedPrecondition(`machine of env ${name} still runs`, { reason: "MACHINE_RUNNING" });
    }
    this.machines.delete(name);
  }
}

/** The few commands every fake machine knows. */
function builtin(command: string[]): ExecReply {
  const [cmd, ...args] = command;
  if (cmd === "echo") return { stdout: `${args.join(" ")}\n`, code: 0 };
  if (cmd === "true") return { code: 0 };
  if (cmd === "false") return { code: 1 };
  if ((cmd === "sh" || cmd === "/bin/sh") && args[0] === "-c") {
    const exit = /^exit (\d+)$/.exec(args[1] ?? "");
    return { code: exit ? Number(exit[1]) : 0 };
  }
  return { stderr: `${cmd}: not found\n`, code: 127 };
}

function session(reply: ExecReply, tty: boolean): ExecSession {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = tty ? null : new PassThrough();
  stdin.resume();
  let finish: (code: number) => void = () => undefined;
  const exit = new Promise<number>((res) => {
    finish = res;
  });
  // output first, then the exit, as a real process's pipes close before its status is read
  setImmediate(() => {
    // a terminal merges both streams
    stdout.end(`${reply.stdout ?? ""}${stderr ? "" : (reply.stderr ?? "")}`);
    stderr?.end(reply.stderr ?? "");
    setImmediate(() => finish(reply.code));
  });
  return {
    pid: 1,
    stdin,
    stdout,
    stderr,
    resize: () => undefined,
    signal: (sig) => finish(128 + (sig === "SIGKILL" ? 9 : 15)),
    exit,
  };
}
