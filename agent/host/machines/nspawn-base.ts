/**
 * What the nspawn machine driver keeps between calls (records, exec slots,
 * port proxies, reserved addresses) and the small steps its start, stop and
 * adopt share: refreshing a record from /proc, undoing a machine's host side,
 * waiting for its leader. The driver's operations are in nspawn-driver.ts.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { LIMIT_FLAGS, type LimitController, missingControllers } from "../../../common/cgroup-mode.js";
import { failedPrecondition, internal, invalidArgument } from "../../../common/errors.js";
import { validateName } from "../../../common/names.js";
import type { MachineLimits, MachineState } from "../interfaces.js";
import type { HostNetworks } from "../networks/host-networks.js";
import { Nat } from "../networks/nat.js";
import { NetworkDriver } from "../networks/network-driver.js";
import { PortProxies } from "../networks/port-proxy.js";
import { DEFAULT_PRIVATE_RANGE } from "../networks/private-range.js";
import type { CgroupDriver } from "./cgroup-driver.js";
import { type CgroupSet, detectHierarchies, V2_KEY } from "./cgroups.js";
import { baseEnv } from "./exec-session.js";
import { ExecSlot, slotsSupported } from "./exec-slot.js";
import { HostCgroups } from "./host-cgroups.js";
import { assignPrivateAddresses, type PlannedLink } from "./links.js";
import { followFile } from "./log-follow.js";
import { type MachineRecord, RecordStore } from "./machine-record.js";
import { findLeader, hasExecd, isAlive } from "./proc.js";
import { SeccompCopies } from "./seccomp-copies.js";
import { sharedSpawner } from "./spawner.js";
import { SCOPES_KEY } from "./systemd-scopes.js";

export interface NspawnDriverOptions {
  /** This agent's node name: part of machine names and cgroup paths. */
  node: string;
  /** Agent state dir; machine records and console logs go to `<stateDir>/machines`. */
  stateDir: string;
  logger: Logger;
  networks?: HostNetworks;
  /** Controller → base cgroup dir; detected from /proc/self/cgroup by default. */
  hierarchies?: Record<string, string>;
  /** The env cgroups' driver; default HostCgroups over `hierarchies`. */
  cgroups?: CgroupDriver;
  /** How long a start may take before it is abandoned. */
  startTimeoutMs?: number;
  /** Pre-joined exec slots (exec-slot.ts); default: when /bin/bash exists. */
  execSlots?: boolean;
  /**
   * A named network namespace (`ip netns`) to run machines in: their veths'
   * host ends live there (several "hosts" on one kernel, tests). Default: the agent's own.
   */
  netns?: string;
  /** Loopback listeners for TCP port forwards (port-proxy.ts); default true. */
  loopbackPorts?: boolean;
  /** Where `private` envs without an address get one (private-range.ts); default 10.213.0.0/16. */
  privateRange?: string;
}

export const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** After an exec ends, its reply (exit code) goes out before the next slot's fork (refillSlot). */
const REFILL_AFTER_EXIT_MS = 10;
/** A long exec gets its env's next slot after this long anyway. */
const REFILL_MAX_WAIT_MS = 250;

export abstract class NspawnMachineBase {
  protected readonly store: RecordStore;
  /** Each running env's copy of its PID 1 seccomp filters (seccomp-copies.ts). */
  protected readonly filters: SeccompCopies;
  protected readonly records = new Map<string, MachineRecord>();
  protected readonly hierarchies: Record<string, string>;
  protected readonly cgroups: CgroupDriver;
  protected readonly networks: HostNetworks;
  protected readonly nat: Nat;
  protected readonly log: Logger;
  /** At most one ready exec slot per running env. */
  protected readonly slots = new Map<string, ExecSlot>();
  protected readonly proxies = new PortProxies();
  /** Auto addresses handed out to starts still in progress (addressUnaddressed). */
  protected readonly reserved = new Set<string>();
  protected readonly useSlots: boolean;
  /** Envs whose cgroups and slot `prewarm` made for a start still to come. */
  protected readonly prewarmed = new Set<string>();
  /** Pending slot refills (refillSlot), cancelled when the env's slot is dropped. */
  private readonly refills = new Map<string, NodeJS.Timeout>();

  constructor(protected readonly opts: NspawnDriverOptions) {
    validateName("node", opts.node);
    const dir = join(opts.stateDir, "machines");
    mkdirSync(dir, { recursive: true });
    this.store = new RecordStore(dir);
    this.filters = new SeccompCopies(dir);
    this.hierarchies = opts.hierarchies ?? detectHierarchies();
    this.cgroups = opts.cgroups ?? new HostCgroups(this.hierarchies);
    if (opts.netns !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(opts.netns)) {
      throw invalidArgument(`bad network namespace name ${JSON.stringify(opts.netns)}`);
    }
    this.networks = opts.networks ?? new NetworkDriver(opts.netns);
    this.nat = new Nat(opts.netns);
    this.log = opts.logger.child({ driver: "machines" });
    // a slot joins the env's cgroup before nspawn starts; a systemd scope exists only once it does
    this.useSlots = opts.execSlots ?? (slotsSupported() && this.hierarchies[SCOPES_KEY] === undefined);
    sharedSpawner(); // its one fork of the agent happens now, not on the first create's path
  }

  protected addSlot(name: string, procsFiles: string[]): void {
    if (!this.useSlots || this.slots.has(name)) return;
    const slot = new ExecSlot(procsFiles, baseEnv(), (s) => {
      if (this.slots.get(name) === s) this.slots.delete(name);
      s.discard();
    });
    this.slots.set(name, slot);
  }

  /**
   * A new slot for the env's next exec, made once the exec that used the last
   * one has ended (its output flushed: REFILL_AFTER_EXIT_MS) or after
   * REFILL_MAX_WAIT_MS for a long one. Spawning is a synchronous fork of the
   * whole agent (tens of ms under load) that blocks the event loop: done
   * inline, it delayed that exec's start and exit on every first exec.
   */
  protected refillSlot(name: string, procsFiles: string[], exit: Promise<unknown>): void {
    if (!this.useSlots || this.refills.has(name)) return;
    const refill = () => {
      if (this.refills.get(name) !== timer) return;
      this.refills.delete(name);
      clearTimeout(timer);
      if (this.records.get(name)?.running) this.addSlot(name, procsFiles);
    };
    const timer = setTimeout(refill, REFILL_MAX_WAIT_MS);
    timer.unref();
    this.refills.set(name, timer);
    const later = () => setTimeout(refill, REFILL_AFTER_EXIT_MS).unref();
    void exit.then(later, later);
  }

  protected takeSlot(name: string): ExecSlot | undefined {
    const slot = this.slots.get(name);
    this.slots.delete(name);
    return slot;
  }

  protected dropSlot(name: string): void {
    const refill = this.refills.get(name);
    if (refill) clearTimeout(refill);
    this.refills.delete(name);
    this.takeSlot(name)?.discard();
  }

  protected alive(rec: MachineRecord): boolean {
    return rec.nspawnPid !== undefined && isAlive(rec.nspawnPid, rec.nspawnStart);
  }

  protected toState(rec: MachineRecord): MachineState {
    return {
      name: rec.name,
      running: rec.running,
      leaderPid: rec.running ? rec.leaderPid : undefined,
      nspawnPid: rec.running ? rec.nspawnPid : undefined,
      startedMs: rec.startedMs,
      exitCode: rec.exitCode,
      addresses: rec.addresses?.map((a) => a.split("/")[0]!),
    };
  }

  /** Refreshes `running` from /proc; a machine that died on its own gets its cgroups removed. */
  protected refresh(rec: MachineRecord): MachineRecord {
    if (rec.running && !this.alive(rec)) {
      rec.running = false;
      this.afterExit(rec);
    }
    return rec;
  }

  protected afterExit(rec: MachineRecord): void {
    this.dropSlot(rec.name);
    this.filters.drop(rec.name);
    void this.proxies.close(rec.name);
    void this.removeCgroupsOf(rec.name, rec.cgroups);
    void this.removeLinks(rec);
    rec.leaderPid = undefined;
    this.store.save(rec);
  }

  /**
   * Loopback listeners for the env's TCP forwards (port-proxy.ts); nspawn's
   * own DNAT covers every other address. Not when nspawn runs in another
   * network namespace than the agent (the listener would be in the wrong one).
   */
  protected async openProxies(rec: MachineRecord): Promise<void> {
    const tcp = (rec.network.ports ?? []).filter((p) => p.protocol === "tcp");
    const target = rec.addresses?.[0];
    if (tcp.length === 0 || !target || this.opts.netns || this.opts.loopbackPorts === false) return;
    await this.proxies.open(rec.name, target, tcp);
  }

  /** Removes an env's cgroups once its processes are gone; says so in the log when some stay. */
  protected async removeCgroupsOf(env: string, set: CgroupSet): Promise<void> {
    const left = await this.cgroups.removeSettled(set);
    if (left.length > 0) this.log.warn({ env, left }, "cgroups still busy; left in place");
  }

  /** Host ends of the env's veths, if the kernel did not drop them with the env's namespace. */
  /** The NAT rules' subject when the env asked for NAT and has its address (networks/nat.ts). */
  protected natTarget(rec: MachineRecord) {
    const address = rec.addresses?.[0];
    if (!rec.network.nat || !rec.vethHost || !address) return undefined;
    return { node: this.opts.node, env: rec.name, hostIf: rec.vethHost, address };
  }

  protected async removeLinks(rec: MachineRecord): Promise<void> {
    const nat = this.natTarget(rec);
    if (nat) await this.nat.disable(nat).catch(() => undefined);
    const hosts = rec.vethHosts ?? (rec.vethHost ? [rec.vethHost] : []);
    for (const h of hosts) await this.networks.removeLink(h).catch(() => undefined);
  }

  /**
   * Addresses for `private` links that name none (links.ts). Taken: every
   * known env's addresses, those being handed out by starts in progress, and
   * /32 routes already in the namespace (another agent sharing it).
   */
  protected async addressUnaddressed(
    env: string,
    links: PlannedLink[],
    previous?: string[],
  ): Promise<string[]> {
    if (!links.some((l) => l.mode === "private" && !l.address)) return [];
    const routes = await this.networks.hostRoutes();
    // from here on synchronous: a concurrent start sees what this one reserves
    const taken = new Set<string>([...this.reserved, ...routes]);
    for (const r of this.records.values())
      if (r.name !== env) for (const a of r.addresses ?? []) taken.add(a);
    const picked = assignPrivateAddresses(
      links,
      this.opts.privateRange ?? DEFAULT_PRIVATE_RANGE,
      taken,
      previous,
    );
    for (const a of picked) this.reserved.add(a);
    return picked;
  }

  /**
   * nspawn's environment. On pure v2, nspawn 252 gives a rootfs without
   * systemd (busybox) the legacy cgroup layout, which it cannot mount there:
   * SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 keeps it on the unified one.
   */
  protected nspawnEnv(): Record<string, string> {
    const env = baseEnv();
    const v2 = this.hierarchies[V2_KEY] !== undefined || this.hierarchies[SCOPES_KEY] !== undefined;
    return v2 ? { ...env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: "1" } : env;
  }

  /** Addresses configured on the env's interface at start. */
  addresses(name: string): string[] {
    return this.records.get(name)?.addresses ?? [];
  }

  /** The console log file of an env's machine. */
  logFile(name: string): string {
    return this.store.logPath(name);
  }

  /**
   * A limit this host cannot enforce is an error before anything is made,
   * never a silent no-op (an env that was asked for 64M must not get all).
   */
  protected checkLimits(name: string, limits: MachineLimits): void {
    const missing = missingControllers(limits, this.cgroups.controllers());
    if (missing.length === 0) return;
    const flags = missing.map((c: LimitController) => `${LIMIT_FLAGS[c]} (${c} controller)`).join(", ");
    throw failedPrecondition(
      `this node cannot enforce ${flags}: the controller is not available to the agent`,
      {
        reason: "LIMITS_UNENFORCEABLE",
        subject: `env/${name}`,
        hint: "`protoctl doctor` on the node shows its cgroup mode; create the env without that limit or on another node",
      },
    );
  }

  /** Cgroups of an earlier life of this env (a crash, another limit set), in every hierarchy. */
  protected clearStale(name: string): void {
    const all = this.cgroups.envSet(this.opts.node, name);
    this.cgroups.kill(all);
    this.cgroups.remove(all);
  }

  /**
   * The leader once it runs its payload. With `hint` (nspawn's own word on
   * its leader, machine-spawn.ts) only that process's exe is checked each
   * millisecond once it came, and /proc is scanned every 10 ms until then
   * (in case it never comes): the full scan each millisecond competed with
   * nspawn's own start on 2 cores.
   */
  protected async waitLeader(rec: MachineRecord, hint?: Promise<number>): Promise<number> {
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 60_000);
    let hinted: number | undefined;
    void hint?.then((p) => {
      hinted = p;
    });
    for (let i = 0; ; i++) {
      const leader =
        hinted !== undefined
          ? hasExecd(hinted, rec.nspawnPid!)
            ? hinted
            : undefined
          : !hint || i % 10 === 0
            ? findLeader(rec.nspawnPid!)
            : undefined;
      if (leader) return leader;
      if (!this.alive(rec)) {
        throw failedPrecondition(`machine ${rec.name} exited during start`, {
          reason: "MACHINE_START_FAILED",
          subject: `env/${rec.name}`,
          output: await this.tail(rec, 20),
          hint: "see the output; `protoctl env logs` shows the whole console",
        });
      }
      if (Date.now() > deadline)
        throw internal(`machine ${rec.name} did not start in time`, { output: await this.tail(rec, 20) });
      // poll fast at first: nspawn reaches exec in a few tens of ms
      const pause = new Promise((r) => setTimeout(r, i < 100 || hinted !== undefined ? 1 : 20));
      await (hint && hinted === undefined ? Promise.race([pause, hint]) : pause);
    }
  }

  /**
   * Boot mode: systemd answers `systemctl` once its private socket exists;
   * before that every exec of systemctl fails ("Failed to connect to bus"),
   * so that is when a booted env counts as started. Units keep starting after
   * (`systemctl is-system-running --wait` waits for them).
   */
  protected async waitSystemdBus(rec: MachineRecord): Promise<void> {
    const sock = `/proc/${rec.leaderPid}/root/run/systemd/private`;
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 60_000);
    while (!existsSync(sock)) {
      if (!this.alive(rec)) {
        throw failedPrecondition(`machine ${rec.name} exited during boot`, {
          reason: "MACHINE_START_FAILED",
          subject: `env/${rec.name}`,
          output: await this.tail(rec, 20),
        });
      }
      if (Date.now() > deadline)
        throw internal(`systemd in ${rec.name} did not come up in time`, {
          output: await this.tail(rec, 20),
        });
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  protected async tail(rec: MachineRecord, lines: number): Promise<string> {
    const parts: Buffer[] = [];
    for await (const b of followFile(rec.logFile, { follow: false, tailLines: lines })) parts.push(b);
    return Buffer.concat(parts).toString("utf8");
  }

  protected async waitGone(rec: MachineRecord, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.alive(rec)) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }
}
