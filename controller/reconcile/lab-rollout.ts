/**
 * The leader's lab rollout loop: moves a lab's `rollout` (labs/rollout.ts)
 * forward from what the store shows now. Envs that must go are deleted;
 * once they are gone, new and replacement envs are created (each creation
 * and its removal from the rollout in one transaction); running machines
 * whose /etc/hosts lags the desired table get it rewritten through their
 * agent, and the applied digest is recorded. A leader killed anywhere leaves
 * a record the next one reads like any other. Retryable failures
 * (`ProtoctlError.retryable`) go back to the queue's backoff; all are kept in
 * the record's rollout and written as events.
 */
import { Code, ProtoctlError } from "../../common/errors.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import type { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { runWithStdin } from "../agents/exec-stdin.js";
import { hostsFileText, loadLabSpec, planLab } from "../labs/index.js";
import { type EnvView, type LabRollout, type RolloutStep, rolloutSteps } from "../labs/rollout.js";
import type { Informer } from "../store/informer.js";
import type { Condition } from "../store/kv.js";
import { type ClusterStore, codecs, type LabRecord } from "../store/store.js";
import type { ClusterCache } from "./cluster-cache.js";
import { newStatus } from "./env-reconciler.js";
import type { ReconcileResult } from "./queue.js";

/** A fixed command: /etc/hosts content arrives on stdin, never in an argument. */
export const WRITE_HOSTS = [
  "/bin/sh",
  "-c",
  "cat > /etc/hosts.protoctl && mv -f /etc/hosts.protoctl /etc/hosts",
];
/** A rollout waiting on envs to go looks again this often (their status changes wake it sooner). */
const WAIT_RECHECK_MS = 2000;

type HostsStep = Extract<RolloutStep, { kind: "hosts" }>;
type CreateStep = Extract<RolloutStep, { kind: "create" }>;

export class LabRollouts {
  /** `${lab}\0${machine}` → message of the last failure event written. */
  private readonly reported = new Map<string, string>();
  /** Agent calls made, for tests. */
  readonly stats = { hosts: 0, creates: 0, deletes: 0 };

  constructor(
    private readonly store: ClusterStore,
    private readonly cache: ClusterCache,
    readonly labs: Informer<LabRecord>,
    private readonly client: (node: string) => AgentServiceClient | undefined,
    private readonly fence: () => Condition[],
    private readonly timeoutMs = 30_000,
  ) {}

  async reconcile(lab: string): Promise<ReconcileResult> {
    const v = await this.store.labStates.get(lab);
    const r = v?.value.rollout;
    if (!v || !r || v.value.deleting) return;
    const rec = v.value;
    const { steps, converged } = rolloutSteps(rec.state, r, this.envViews(rec, r));
    if (converged) return;
    const hosts: { step: HostsStep; err?: ProtoctlError }[] = [];
    const creates: CreateStep[] = [];
    let desired: Map<string, EnvSpec> | undefined;
    const specOf = (machine: string) => {
      desired ??= desiredSpecs(rec);
      const s = desired.get(machine);
      if (!s) throw new ProtoctlError(Code.INTERNAL, `lab ${lab}: no spec for machine ${machine}`);
      return s;
    };
    await Promise.all(
      steps.map(async (s) => {
        if (s.kind === "delete") {
          this.stats.deletes++;
          await deleteEnvSpec(this.store, s.env, this.fence());
        } else if (s.kind === "hosts") {
          hosts.push({ step: s, err: await this.rewriteHosts(s, specOf(s.machine)) });
        } else if (s.kind === "create") {
          creates.push(s);
        }
      }),
    );
    const forget = new Set(steps.flatMap((s) => (s.kind === "forget" ? [s.env] : [])));
    if (forget.size > 0 || hosts.length > 0)
      await this.record(lab, (ro, state) => {
        ro.remove = ro.remove.filter((e) => !forget.has(e));
        for (const { step, err } of hosts) {
          if (state.machines[step.machine]?.hostsDigest !== step.digest) continue;
          if (!err) {
            ro.hostsApplied[step.machine] = step.digest;
            delete ro.hostsErrors[step.machine];
          } else {
            ro.hostsErrors[step.machine] = {
              digest: step.digest,
              message: err.message,
              terminal: !err.retryable,
            };
          }
        }
      });
    for (const step of creates) await this.create(lab, step.machine, step.env, specOf(step.machine));
    for (const { step, err } of hosts) {
      if (err)
        await this.report(lab, step.machine, `cannot update /etc/hosts of ${step.machine}: ${err.message}`);
    }
    const retry = hosts.find((o) => o.err?.retryable)?.err;
    if (retry) throw retry;
    return { requeueAfterMs: WAIT_RECHECK_MS };
  }

  /** What the cache shows of the rollout's envs and the lab's machines. */
  private envViews(rec: LabRecord, r: LabRollout): Map<string, EnvView> {
    const out = new Map<string, EnvView>();
    const names = new Set([...r.remove, ...Object.values(rec.state.machines).map((m) => m.envName)]);
    for (const n of names) {
      const spec = this.cache.specs.get(n);
      const st = this.cache.status.get(n)?.value;
      if (!spec && !st) continue;
      out.set(n, { spec: !!spec, phase: st?.phase, node: st?.node });
    }
    return out;
  }

  private async rewriteHosts(s: HostsStep, spec: EnvSpec): Promise<ProtoctlError | undefined> {
    this.stats.hosts++;
    try {
      const c = this.client(s.node);
      if (!c) throw new ProtoctlError(Code.UNAVAILABLE, `node ${s.node} has no address`);
      const text = hostsFileText(s.machine, spec.network?.hosts ?? {});
      const code = await runWithStdin(c, s.env, WRITE_HOSTS, Buffer.from(text), this.timeoutMs);
      if (code !== 0) {
        throw new ProtoctlError(Code.FAILED_PRECONDITION, `rewriting /etc/hosts exited with ${code}`, {
          reason: "LAB_HOSTS_FAILED",
          subject: `env/${s.env}`,
        });
      }
      return undefined;
    } catch (err) {
      return ProtoctlError.from(err);
    }
  }

  /** Creates one env and takes it off the rollout, in one transaction; a name taken outside the lab is recorded. */
  private async create(lab: string, machine: string, env: string, spec: EnvSpec): Promise<void> {
    const cur = await this.store.labStates.get(lab);
    const ro = cur?.value.rollout;
    if (!cur || !ro || cur.value.deleting || cur.value.state.machines[machine]?.envName !== env) return;
    const next = structuredClone(cur.value);
    const nr = next.rollout!;
    nr.replace = nr.replace.filter((e) => e !== env);
    nr.create = nr.create.filter((e) => e !== env);
    const specKey = this.store.keys.envSpec(env);
    const statusKey = this.store.keys.envStatus(env);
    const taken = await this.store.envSpecs.get(env);
    if (taken || (await this.store.envStatus.get(env))) {
      if (taken && taken.value.group === lab) return; // ours, written by a pass the cache has not seen
      // a stranger's env (or one still going): the machine is not created; `lab up` reports it
      if (taken) nr.createErrors[machine] = `env ${env} exists outside the lab`;
      else return;
    } else {
      nr.hostsApplied[machine] = cur.value.state.machines[machine]!.hostsDigest;
      delete nr.createErrors[machine];
      delete nr.hostsErrors[machine];
    }
    const labKey = this.store.keys.labState(lab);
    const writes = nr.createErrors[machine]
      ? []
      : [
          { op: "put" as const, key: specKey, value: codecs.envSpec.encode(spec) },
          { op: "put" as const, key: statusKey, value: codecs.envStatus.encode(newStatus()) },
        ];
    const r = await this.store.kv.commit({
      conditions: [
        { key: labKey, modRevision: cur.modRevision },
        ...(writes.length
          ? [
              { key: specKey, modRevision: 0 },
              { key: statusKey, modRevision: 0 },
            ]
          : []),
        ...this.fence(),
      ],
      writes: [...writes, { op: "put", key: labKey, value: codecs.labState.encode(next) }],
    });
    if (!r.succeeded) throw new ProtoctlError(Code.ABORTED, `lab ${lab} changed while creating ${env}`);
    if (writes.length) this.stats.creates++;
    else await this.report(lab, machine, `machine ${machine} not created: ${nr.createErrors[machine]}`);
  }

  /** Read-modify-write of the record's rollout, fenced (a deposed leader writes nothing). */
  private async record(lab: string, fn: (r: LabRollout, state: LabRecord["state"]) => void): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const cur = await this.store.labStates.get(lab);
      if (!cur?.value.rollout) return;
      const next = structuredClone(cur.value);
      fn(next.rollout!, next.state);
      const key = this.store.keys.labState(lab);
      const w = await this.store.kv.commit({
        conditions: [{ key, modRevision: cur.modRevision }, ...this.fence()],
        writes: [{ op: "put", key, value: codecs.labState.encode(next) }],
      });
      if (w.succeeded) return;
    }
    throw new ProtoctlError(Code.ABORTED, `lab ${lab} keeps changing (or this controller lost the lead)`);
  }

  /** A `lab.machine_failed` event, once per machine and message. */
  private async report(lab: string, machine: string, message: string): Promise<void> {
    const k = `${lab}\0${machine}`;
    if (this.reported.get(k) === message) return;
    this.reported.set(k, message);
    await this.store.events.emit({ kind: "lab.machine_failed", subject: `lab/${lab}`, message });
  }
}

/** The env spec of every machine of a record, rebuilt from its spec and state (plans are pure and stable). */
export function desiredSpecs(rec: LabRecord): Map<string, EnvSpec> {
  const { spec } = loadLabSpec(rec.specYaml, "lab.yaml");
  const plan = planLab(spec, rec.state);
  const out = new Map<string, EnvSpec>();
  for (const m of [...plan.machines.keep, ...plan.machines.replace, ...plan.machines.create]) {
    out.set(m.name, m.envSpec);
  }
  return out;
}

/** Deletes an env's spec (asks for its deletion); false when it had none. */
export async function deleteEnvSpec(
  store: ClusterStore,
  env: string,
  fence: Condition[] = [],
): Promise<boolean> {
  for (let i = 0; i < 5; i++) {
    const spec = await store.envSpecs.get(env);
    if (!spec) return (await store.envStatus.get(env)) !== undefined;
    const r = await store.batcher.commit({
      conditions: [{ key: spec.key, modRevision: spec.modRevision }, ...fence],
      writes: [{ op: "delete", key: spec.key }],
    });
    if (r.succeeded) return true;
  }
  throw new ProtoctlError(Code.ABORTED, `env ${env} keeps changing; try again`);
}
