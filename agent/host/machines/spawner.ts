/**
 * The agent's side of protoctl-spawner (enter/spawner.c): one long-lived
 * helper per agent process that forks machines, snapshots env roots (with
 * their disk limits) and deletes them, so the agent's own (large) process is
 * not forked on the create and rm paths. Started once, its stdin/stdout pipes are the only way to reach
 * it. When the binary is missing (sources not built), `sharedSpawner()` is
 * undefined and callers keep their direct paths.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import type { Socket } from "node:net";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnDirect } from "../../../common/exec.js";
import { baseEnv } from "./exec-session.js";
import {
  encodeDestroy,
  encodeSimpleQuotas,
  encodeSnapshot,
  encodeStart,
  parseReply,
  type Reply,
  type SnapshotRequest,
  type StartRequest,
} from "./spawner-protocol.js";

export function spawnerPath(): string {
  if (process.env.PROTOCTL_SPAWNER) return process.env.PROTOCTL_SPAWNER;
  // beside protoctl-enter when that one is moved (tests build both into one directory)
  if (process.env.PROTOCTL_ENTER) return join(dirname(process.env.PROTOCTL_ENTER), "protoctl-spawner");
  return fileURLToPath(new URL("./enter/protoctl-spawner", import.meta.url));
}

/** A failed request: the step that failed and its errno (name in `code`, e.g. ENOSPC). */
export class SpawnerError extends Error {
  override readonly name = "SpawnerError";
  constructor(
    readonly stage: string,
    readonly errno: number,
  ) {
    super(`${stage}: ${errnoName(errno)}`);
  }
  get code(): string {
    return errnoName(this.errno);
  }
}

/** The errno's name (EDQUOT, …), or `errno N` when Node has none. */
export function errnoName(n: number): string {
  for (const [k, v] of Object.entries(constants.errno)) if (v === n) return k;
  return `errno ${n}`;
}

type Exit = { code: number | null; signal: number | null };

export interface StartEvents {
  onExit?(e: Exit): void;
  /** nspawn named its container leader (StartRequest.notifySocket); may never come. */
  onLeader?(leader: number): void;
}

export class Spawner {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly events = new Map<number, StartEvents>();
  private buffered = "";
  private dead: Error | undefined;

  constructor(path: string) {
    // every start names the child's whole environment; this one only carries the test marker
    this.child = spawnDirect(path, [], { stdio: ["pipe", "pipe", "inherit"], env: baseEnv() });
    this.child.on("error", (e) => this.fail(e));
    this.child.on("exit", (code, sig) => this.fail(new Error(`protoctl-spawner exited (${sig ?? code})`)));
    this.child.stdin!.on("error", (e) => this.fail(e));
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (s: string) => this.onData(s));
    // the agent may exit with the helper running: it then sees EOF and exits itself
    this.child.unref();
    this.hold(false);
    (this.child.stdin as unknown as Socket).unref();
  }

  /** Keeps the process up while a reply is awaited (nothing else may hold it: a CLI, a test). */
  private hold(on: boolean): void {
    const out = this.child.stdout as unknown as Socket;
    if (on) out.ref();
    else out.unref();
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  /** Starts argv (a new session, in the cgroups given); resolves with its pid once it has exec'd. */
  async start(r: StartRequest, events: StartEvents = {}): Promise<number> {
    const reply = await this.request((id) => encodeStart(id, r));
    if (reply.kind !== "ok" || reply.pid === undefined) throw new Error("protoctl-spawner: bad start reply");
    // its events come only after its start's reply (the helper watches and reaps after replying)
    this.events.set(reply.pid, events);
    return reply.pid;
  }

  /** A btrfs snapshot, with its disk limit when `limitBytes` is given (one round trip). */
  async snapshot(r: SnapshotRequest): Promise<void> {
    await this.request((id) => encodeSnapshot(id, r));
  }

  /** Deletes subvolume `name` in `parent` (no nested subvolumes; they make it fail, changing nothing). */
  async destroy(parent: string, name: string): Promise<void> {
    await this.request((id) => encodeDestroy(id, parent, name));
  }

  /** Turns btrfs simple quotas on for the filesystem of `dir` (kernel ≥ 6.7); a no-op when on. */
  async enableSimpleQuotas(dir: string): Promise<void> {
    await this.request((id) => encodeSimpleQuotas(id, dir));
  }

  stop(): void {
    this.child.stdin?.end();
  }

  private request(encode: (id: number) => Buffer): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    const buf = encode(id);
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.hold(true);
      this.child.stdin!.write(buf);
    }).then((r) => {
      if (r.kind === "err") throw new SpawnerError(r.stage, r.errno);
      return r;
    });
  }

  private onData(s: string): void {
    this.buffered += s;
    for (let nl = this.buffered.indexOf("\n"); nl >= 0; nl = this.buffered.indexOf("\n")) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const r = parseReply(line);
      if (!r) continue;
      if (r.kind === "exit") {
        const ev = this.events.get(r.pid);
        this.events.delete(r.pid);
        ev?.onExit?.({ code: r.code, signal: r.signal });
        continue;
      }
      if (r.kind === "leader") {
        this.events.get(r.pid)?.onLeader?.(r.leader);
        continue;
      }
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      if (this.pending.size === 0) this.hold(false);
      p?.resolve(r);
    }
  }

  private fail(e: Error): void {
    this.dead ??= e;
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
    this.events.clear();
    if (shared === this) shared = undefined;
  }
}

let shared: Spawner | undefined;

/** This process's spawner, started on first use (again after it died); undefined without the binary. */
export function sharedSpawner(): Spawner | undefined {
  if (shared?.alive) return shared;
  const path = spawnerPath();
  if (!existsSync(path)) return undefined;
  shared = new Spawner(path);
  return shared;
}
