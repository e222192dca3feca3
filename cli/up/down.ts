/**
 * `protoctl down`: stops the one-machine cluster (the supervisor stops agent,
 * controller and etcd in that order; the agent stops its envs and releases
 * its pool), then makes sure nothing is left: stray processes, mounts and
 * loop devices under the state dir, and (without --keep) the state dir and
 * the CLI context `up` wrote.
 *
 * When nothing runs, `down` says so and exits 0 (it is idempotent, like
 * `up`); without --keep it still removes what a previous run left.
 */
import { existsSync } from "node:fs";
import { cleanupState, processesNaming, terminate } from "../../common/state-cleanup.js";
import { isOurProcess, readJson, readPid, runningSupervisor, StatePaths, type UpRecord } from "./state.js";

export interface DownOptions {
  stateDir: string;
  keep: boolean;
  quiet?: boolean;
  /** Remove everything but the logs (after a failed `up`, so they can be read). */
  spareLogs?: boolean;
  say(line: string): void;
}

export interface DownResult {
  /** False when nothing was running. */
  wasRunning: boolean;
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function down(o: DownOptions): Promise<DownResult> {
  const paths = new StatePaths(o.stateDir);
  const rec = readJson<UpRecord>(paths.upFile);
  const supervisor = runningSupervisor(paths);
  const children = ["agent", "controller", "etcd"]
    .map((n) => readPid(paths.pidFile(n)))
    .filter((p): p is number => isOurProcess(p, paths.root));
  const wasRunning = supervisor !== undefined || children.length > 0;

  if (!wasRunning) {
    if (!existsSync(paths.root)) {
      o.say(`protoctl is not running (no state in ${paths.root}); nothing to do`);
      return { wasRunning };
    }
    o.say(`protoctl is not running (state dir ${paths.root})`);
  } else {
    if (rec) await settleEnvs(rec, paths, o);
    if (!o.quiet) o.say("stopping the agent, the controller and etcd");
    if (supervisor) {
      process.kill(supervisor, "SIGTERM");
      // The supervisor gives the agent up to 60 s to stop envs and release the pool.
      if (!(await waitGone(supervisor, 90_000))) await terminate([supervisor], 0);
    }
    // Children left by a supervisor that was killed.
    const left = children.filter((p) => isOurProcess(p, paths.root));
    if (left.length) await terminate(left, 10_000);
  }

  if (o.keep) {
    // Machines the agent could not stop; the pool and every file stay for the next `up`.
    const stray = processesNaming(paths.root);
    if (stray.length) await terminate(stray);
    if (!o.quiet) o.say(`protoctl is down; state kept in ${paths.root} (the pool stays mounted)`);
    return { wasRunning };
  }
  const report = await cleanupState(paths.root, { node: rec?.nodeName, spare: o.spareLogs ? ["logs"] : [] });
  const parts: string[] = [];
  if (report.killed) parts.push(`${report.killed} stray process(es) stopped`);
  if (report.unmounted.length) parts.push(`${report.unmounted.length} mount(s) removed`);
  if (report.detached.length) parts.push(`${report.detached.length} loop device(s) detached`);
  if (report.cgroups) parts.push(`${report.cgroups} cgroup(s) removed`);
  parts.push(o.spareLogs ? `state removed, logs kept in ${paths.logDir}` : `${paths.root} removed`);
  await forgetContext(rec?.contextName ?? "local", rec?.controllerPort);
  if (!o.quiet) o.say(`${wasRunning ? "protoctl is down" : "cleaned up"}: ${parts.join(", ")}`);
  return { wasRunning };
}

/** Removes the context `up` wrote, if it still points at this cluster. */
async function forgetContext(name: string, port: number | undefined): Promise<void> {
  const { loadCliConfig, saveCliConfig } = await import("../config/contexts.js");
  const cfg = await loadCliConfig();
  const ctx = cfg.contexts[name];
  if (!ctx || (port && ctx.controller !== `127.0.0.1:${port}`)) return;
  delete cfg.contexts[name];
  if (cfg.currentContext === name) cfg.currentContext = undefined;
  await saveCliConfig(cfg);
}

/**
 * While the cluster still runs, lets the agent do the proper work: delete the
 * node's envs (or, with --keep, stop them), so machines, env roots and
 * cgroups go the normal way. Best effort, bounded: the safety net follows.
 */
async function settleEnvs(rec: UpRecord, paths: StatePaths, o: DownOptions): Promise<void> {
  let api: import("../client/connect.js").Api | undefined;
  try {
    const { localContext } = await import("./up.js");
    const { connect } = await import("../client/connect.js");
    api = await connect({ ...localContext(rec, paths), name: "local", source: "context" });
    const a = api;
    const envs = (await a.unary("listEnvs", { node: "", group: "" }, { deadlineMs: 5000 })).envs;
    const names = envs.map((e) => e.spec?.name ?? "").filter(Boolean);
    if (names.length === 0) return;
    if (!o.quiet) o.say(`${o.keep ? "stopping" : "deleting"} ${names.length} env(s): ${names.join(", ")}`);
    await Promise.all(
      names.map((name) =>
        (o.keep
          ? a.unary("stopEnv", { name, timeoutMs: 10_000, wait: true }, { deadlineMs: 60_000 })
          : a.unary("deleteEnv", { name, wait: true }, { deadlineMs: 60_000 })
        ).catch(() => undefined),
      ),
    );
  } catch {
    // unreachable or broken: the safety net below removes what is left
  } finally {
    api?.close();
  }
}
