/**
 * MachineDriver over systemd-nspawn, without a system bus
 * (`--register=no --keep-unit`), with cgroups the agent makes and limits.
 *
 * Start: make the env's cgroups, start `systemd-nspawn …` in them (machine-spawn.ts:
 * through protoctl-spawner, else `sh <join-cgroups> … --`)
 * detached (own session, stdio to the console log file, no pipes to us), so a
 * SIGKILLed agent leaves machines running; nothing of that process is kept
 * but its pid. Ready = the leader (PID 1 inside) has exec'd its payload, seen
 * in /proc (polled every 1 ms): nothing else is waited for. An exec slot is
 * spawned alongside (exec-slot.ts), so the first exec does not wait for a
 * cgroup join.
 * Stop: SIGTERM to nspawn (forwarded to PID 1 as --kill-signal: SIGTERM for
 * the command-mode init, SIGRTMIN+3 for systemd), then cgroup.kill after the
 * timeout; the cgroups go once empty.
 */
import { failedPrecondition, internal, invalidArgument, notFound } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import { validateName } from "../../../common/names.js";
import { openDirInRoot } from "../../../common/root-path.js";
import type {
  ExecRequest,
  ExecSession,
  MachineDriver,
  MachineLimits,
  MachineSpec,
  MachineState,
} from "../interfaces.js";
import type { CgroupSet } from "./cgroups.js";
import { requireEnterHelper } from "./enter-helper.js";
import { DEFAULT_PATH, drainAfterExit, startExec } from "./exec-session.js";
import { planLinks } from "./links.js";
import { followFile } from "./log-follow.js";
import type { MachineRecord } from "./machine-record.js";
import { spawnMachine } from "./machine-spawn.js";
import { machineName } from "./naming.js";
import { nspawnArgs } from "./nspawn-args.js";
import { ENV_KEY, NspawnMachineBase } from "./nspawn-base.js";
import { findLeader, procStat } from "./proc.js";
import { scopeRunArgv } from "./systemd-scopes.js";
import { chownToContainerRoot } from "./userns.js";
import { checkUserName, findUser, numericUser, parsePasswd } from "./users.js";

export type { NspawnDriverOptions } from "./nspawn-base.js";

export class NspawnMachineDriver extends NspawnMachineBase implements MachineDriver {
  /**
   * Makes the env's cgroups while the caller still prepares the root. The
   * first exec slot is not spawned here but in `start`, once nspawn is: a
   * spawn blocks the event loop until the child has exec'd (tens of ms on a
   * loaded host), which here delayed the snapshot, and there overlaps
   * nspawn's own start-up, which the agent only waits for.
   */
  prewarm(name: string, limits: MachineLimits): void {
    validateName("env", name);
    this.checkLimits(name, limits);
    const existing = this.records.get(name);
    if (existing && this.refresh(existing).running) return;
    const cgroups = this.cgroups.envSet(this.opts.node, name, limits);
    this.dropSlot(name);
    this.clearStale(name);
    this.cgroups.create(cgroups, limits);
    this.prewarmed.add(name);
  }

  async start(spec: MachineSpec): Promise<MachineState> {
    validateName("env", spec.name);
    const existing = this.records.get(spec.name);
    if (existing && this.refresh(existing).running) return this.toState(existing);
    for (const k of Object.keys(spec.env)) {
      if (!ENV_KEY.test(k)) throw invalidArgument(`invalid environment variable name ${JSON.stringify(k)}`);
    }
    this.checkLimits(spec.name, spec.limits);
    const machine = machineName(this.opts.node, spec.name);
    const net = spec.network;
    if ((net.ports?.length ?? 0) > 0 && net.mode !== "private" && net.mode !== "bridge") {
      throw invalidArgument("port forwards need a private or bridge network", {
        reason: "PORTS_NEED_NETWORK",
      });
    }
    const links = planLinks(this.opts.node, spec.name, net);
    const picked = await this.addressUnaddressed(spec.name, links, existing?.addresses);
    const vethHosts = links.map((l) => l.hostIf);
    const vethHost = vethHosts[0];
    const cgroups: CgroupSet = this.cgroups.envSet(this.opts.node, spec.name, spec.limits);
    const rec: MachineRecord = {
      name: spec.name,
      machine,
      rootDir: spec.rootDir,
      boot: spec.boot,
      env: spec.env,
      network: net,
      cgroups,
      logFile: this.store.logPath(spec.name),
      vethHost,
      vethHosts,
      running: false,
    };
    // a stale cgroup or veth from a crash of this very env: clear it first (prewarm did already)
    if (!this.prewarmed.delete(spec.name)) {
      this.dropSlot(spec.name);
      this.clearStale(spec.name);
    }
    for (const h of vethHosts) if (await this.networks.linkExists(h)) await this.networks.removeLink(h);
    this.filters.drop(spec.name);

    try {
      this.cgroups.create(cgroups, spec.limits);
      const procsFiles = this.cgroups.startProcsFiles(cgroups);
      const inNetns = this.opts.netns ? ["nsenter", `--net=/run/netns/${this.opts.netns}`] : [];
      const inScope = cgroups.scope !== undefined ? scopeRunArgv(this.opts.node, spec.name, spec.limits) : [];
      const command = [...inScope, ...inNetns, "systemd-nspawn", ...nspawnArgs({ spec, machine, links })];
      const started = await spawnMachine(rec.logFile, procsFiles, command, this.nspawnEnv());
      // spawned while nspawn starts (waited for below, not on the start's path); its cgroup
      // join and the wrapper's, a moment apart, share one RCU grace period (see exec-slot.ts)
      this.addSlot(spec.name, procsFiles);
      const pid = started.pid;
      rec.nspawnPid = pid;
      rec.nspawnStart = procStat(pid)?.startTime;
      rec.startedMs = Date.now();
      rec.running = true;
      this.records.set(spec.name, rec);
      this.store.save(rec);
      // only the exit code is kept
      started.onExit((code) => {
        if (rec.nspawnPid === pid) rec.exitCode = code;
      });
      rec.leaderPid = await this.waitLeader(rec, started.leader);
      // container root owns its console log, as PID 1 does its open fd: `echo > /proc/1/fd/1` works
      if (!spec.privileged) chownToContainerRoot(rec.logFile, rec.leaderPid);
      if (spec.boot) await this.waitSystemdBus(rec);
      const addresses: string[] = [];
      for (const l of links) {
        const r = await this.networks.setupEnvLink({
          hostIf: l.hostIf,
          containerIf: l.ifname,
          leaderPid: rec.leaderPid,
          mode: l.mode,
          bridge: l.bridge,
          address: l.address,
          gateway: l.gateway,
          defaultRoute: l.defaultRoute,
        });
        addresses.push(...r.addresses);
      }
      if (links.length > 0) rec.addresses = addresses;
      const nat = this.natTarget(rec);
      if (nat) {
        this.store.save(rec); // recorded before the rules exist, so a crash's cleanup finds them
        await this.nat.enable(nat);
      }
      for (const a of picked) this.reserved.delete(a);
      await this.openProxies(rec);
      this.store.save(rec);
      this.log.debug({ env: spec.name, machine, pid, leader: rec.leaderPid }, "machine started");
      return this.toState(rec);
    } catch (err) {
      for (const a of picked) this.reserved.delete(a);
      rec.running = false;
      this.dropSlot(spec.name);
      this.filters.drop(spec.name);
      await this.proxies.close(spec.name);
      this.cgroups.kill(cgroups);
      if (rec.nspawnPid) await this.waitGone(rec, 5000);
      await this.removeCgroupsOf(spec.name, cgroups);
      await this.removeLinks(rec);
      this.records.delete(spec.name);
      this.store.remove(spec.name);
      throw err;
    }
  }

  async stop(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<MachineState> {
    const rec = this.records.get(name);
    if (!rec)
      throw notFound(`no machine for env ${name}`, { reason: "MACHINE_NOT_FOUND", subject: `env/${name}` });
    this.dropSlot(name);
    await this.proxies.close(name);
    this.filters.drop(name);
    if (rec.running && this.alive(rec)) {
      if (!opts.force) {
        try {
          process.kill(rec.nspawnPid!, "SIGTERM");
        } catch {
          // gone already
        }
        await this.waitGone(rec, opts.timeoutMs);
      }
      // the container first, so nspawn exits by itself and undoes its setup (--port rules)
      if (this.alive(rec) && this.cgroups.killPayload(rec.cgroups)) await this.waitGone(rec, 2000);
      if (this.alive(rec)) {
        this.cgroups.kill(rec.cgroups);
        if (!(await this.waitGone(rec, 10_000))) {
          throw internal(`machine ${name} did not die after SIGKILL`, { subject: `env/${name}` });
        }
      }
    }
    rec.running = false;
    await this.removeCgroupsOf(name, rec.cgroups);
    await this.removeLinks(rec);
    rec.leaderPid = undefined;
    this.store.save(rec);
    return this.toState(rec);
  }

  async state(name: string): Promise<MachineState> {
    const rec = this.records.get(name);
    if (!rec) return { name, running: false };
    return this.toState(this.refresh(rec));
  }

  async list(): Promise<MachineState[]> {
    return [...this.records.values()].map((r) => this.toState(this.refresh(r)));
  }

  async exec(req: ExecRequest): Promise<ExecSession> {
    const rec = this.records.get(req.name);
    if (!rec || !this.refresh(rec).running || !rec.leaderPid) {
      throw failedPrecondition(`env ${req.name} is not running`, {
        reason: "ENV_NOT_RUNNING",
        subject: `env/${req.name}`,
        hint: `start it with \`protoctl env start ${req.name}\``,
      });
    }
    if (req.command.length === 0 || req.command[0] === "") throw invalidArgument("exec needs a command");
    const user = req.user && req.user !== "root" ? await this.resolveUser(rec, req.user) : undefined;
    const env: Record<string, string> = {
      PATH: DEFAULT_PATH,
      HOME: user?.home ?? "/root",
      ...(user?.name ? { USER: user.name, LOGNAME: user.name } : {}),
      ...rec.env,
      ...(req.env ?? {}),
    };
    for (const k of Object.keys(env)) {
      if (!ENV_KEY.test(k)) throw invalidArgument(`invalid environment variable name ${JSON.stringify(k)}`);
    }
    const workdir = req.workdir || "/";
    if (!workdir.startsWith("/") || workdir.includes("\0"))
      throw invalidArgument("workdir must be an absolute path");
    for (const w of req.command) if (w.includes("\0")) throw invalidArgument("command words cannot hold NUL");
    const procsFiles = this.cgroups.execProcsFiles(rec.cgroups);
    const helper = requireEnterHelper();
    const session = await startExec(
      {
        helper,
        leaderPid: rec.leaderPid,
        filterFile: this.filters.file(rec.name),
        procsFiles,
        command: req.command,
        env,
        workdir,
        tty: req.tty,
        rows: req.rows ?? 24,
        cols: req.cols ?? 80,
        user: user ? { uid: user.uid, gid: user.gid } : undefined,
      },
      req.tty ? undefined : this.takeSlot(req.name),
    );
    // the next exec finds a slot that has joined already (made off this exec's path)
    if (!req.tty) this.refillSlot(req.name, procsFiles, session.exit);
    return session;
  }

  /** `name` (looked up in the env's own /etc/passwd) or numeric `uid[:gid]`. */
  private async resolveUser(
    rec: MachineRecord,
    user: string,
  ): Promise<{ uid: number; gid: number; home?: string; name?: string }> {
    const num = numericUser(user);
    if (num) return num;
    checkUserName(user);
    const s = await this.exec({ name: rec.name, command: ["cat", "/etc/passwd"], tty: false });
    s.stdin.end();
    const out: Buffer[] = [];
    s.stdout.on("data", (b: Buffer) => out.push(b));
    s.stderr?.resume();
    const code = await drainAfterExit(s);
    if (code !== 0) {
      throw failedPrecondition(`cannot read /etc/passwd in env ${rec.name} (exit ${code})`, {
        reason: "USER_LOOKUP_FAILED",
        subject: `env/${rec.name}`,
        hint: "pass a numeric uid[:gid] instead",
      });
    }
    const e = findUser(parsePasswd(Buffer.concat(out).toString("utf8")), user, rec.name);
    return { uid: e.uid, gid: e.gid, home: e.home || "/", name: e.name };
  }

  async *logs(
    name: string,
    opts: { follow: boolean; tailLines?: number; signal?: AbortSignal },
  ): AsyncIterable<{ stream: string; data: Buffer; timeMs: number }> {
    const rec = this.records.get(name);
    if (!rec) return;
    for await (const data of followFile(rec.logFile, {
      follow: opts.follow,
      tailLines: opts.tailLines,
      signal: opts.signal,
      done: () => !this.refresh(rec).running,
    })) {
      yield { stream: "stdout", data, timeMs: Date.now() };
    }
    // the journal of a booted env, as text, after the console; its directory is resolved and
    // held inside the root (root-path.ts), so a symlinked var/log/journal cannot show the host's
    const journal = rec.boot
      ? await openDirInRoot(rec.rootDir, "var/log/journal").catch(() => undefined)
      : undefined;
    if (journal) {
      try {
        const args = ["-D", journal.pathForChild, "--no-pager", "-o", "short-precise"];
        if (opts.tailLines) args.push("-n", String(opts.tailLines));
        const r = await run("journalctl", args, { allowFailure: true, signal: opts.signal });
        if (r.stdout) yield { stream: "system", data: Buffer.from(r.stdout), timeMs: Date.now() };
      } finally {
        await journal.close();
      }
    }
  }

  async adopt(): Promise<MachineState[]> {
    const out: MachineState[] = [];
    for (const rec of this.store.loadAll()) {
      this.records.set(rec.name, rec);
      if (rec.running && this.alive(rec)) {
        rec.leaderPid = findLeader(rec.nspawnPid!) ?? rec.leaderPid;
        await this.openProxies(rec).catch((err: Error) =>
          this.log.warn({ env: rec.name, err: err.message }, "cannot reopen loopback port forwards"),
        );
        this.log.info({ env: rec.name, pid: rec.nspawnPid }, "adopted running machine");
      } else if (rec.running) {
        rec.running = false;
        this.afterExit(rec);
        this.log.info({ env: rec.name }, "machine died while the agent was away");
      }
      out.push(this.toState(rec));
    }
    // cgroups of a start the previous agent never recorded (killed in between): end and remove them
    for (const name of this.cgroups.listEnvs(this.opts.node)) {
      if (this.records.has(name)) continue;
      await this.removeCgroupsOf(name, this.cgroups.envSet(this.opts.node, name));
      this.log.info({ env: name }, "removed cgroups of an unrecorded machine");
    }
    return out;
  }

  async cleanup(name: string): Promise<void> {
    this.dropSlot(name);
    this.filters.drop(name);
    await this.proxies.close(name);
    if (this.prewarmed.delete(name) && !this.records.has(name)) {
      await this.removeCgroupsOf(name, this.cgroups.envSet(this.opts.node, name));
    }
    const rec = this.records.get(name);
    if (rec) {
      if (this.refresh(rec).running) {
        throw failedPrecondition(`machine of env ${name} still runs`, { reason: "MACHINE_RUNNING" });
      }
      await this.removeCgroupsOf(name, rec.cgroups);
      await this.removeLinks(rec);
    }
    this.records.delete(name);
    this.store.remove(name);
  }
}
