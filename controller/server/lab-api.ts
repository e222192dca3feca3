/**
 * Lab RPCs. ApplyLab plans the spec against the stored lab (controller/labs,
 * pure), records the new state (addresses, VNIs, bridge names) in
 * `lab-state/<lab>` first, so the leader knows the lab's networks before any
 * of its machines is placed, with the rollout (labs/rollout.ts) in the same
 * write: which envs go, which come, which /etc/hosts are due. The leader's
 * lab loop (reconcile/lab-rollout.ts) carries it out whoever took the call;
 * this handler only follows it (lab-follow.ts). DeleteLab marks the lab as deleting and deletes its envs;
 * the leader removes the networks once they are gone, then the record.
 */
import type { ServerWritableStream } from "@grpc/grpc-js";
import { formatBaseRef } from "../../common/base-ref.js";
import { checkSpecFields } from "../../common/env-spec-fields.js";
import { Code, failedPrecondition, notFound, ProtoctlError } from "../../common/errors.js";
import { KeyedLock } from "../../common/keyed-lock.js";
import { validateName } from "../../common/names.js";
import type {
  ApplyLabRequest,
  DeleteLabRequest,
  GetLabRequest,
  LabGraphRequest,
  LabProgress,
} from "../../proto/gen/protoctl/v1/control.js";
import { EnvPhase, type EnvStatus, type Lab, LabPhase } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import {
  clusterNetworkIds,
  type LabPlan,
  labGraph,
  labView,
  loadLabSpec,
  type MachineStatus,
  planLab,
} from "../labs/index.js";
import { mergeRollout } from "../labs/rollout.js";
import type { LabSpec } from "../labs/spec-types.js";
import { deleteEnvSpec } from "../reconcile/lab-rollout.js";
import { codecs, type LabRecord } from "../store/store.js";
import type { EnvStatusWaiter } from "./env-watch.js";
import { cancelled, serverStream, unary } from "./handlers.js";
import { followRollout } from "./lab-follow.js";

const WAIT_MS = 10 * 60_000;

export function labApi(ctx: ControllerContext, waiter: EnvStatusWaiter) {
  const store = ctx.store;
  const locks = new KeyedLock();

  const statuses = async (): Promise<Map<string, { spec: boolean; status: EnvStatus }>> => {
    const [sl, tl] = await Promise.all([store.envSpecs.list(), store.envStatus.list()]);
    const specs = new Set(sl.items.map((i) => store.envSpecs.nameOf(i.key)));
    const out = new Map<string, { spec: boolean; status: EnvStatus }>();
    for (const it of tl.items) {
      const n = store.envStatus.nameOf(it.key)!;
      out.set(n, { spec: specs.has(n), status: it.value });
    }
    return out;
  };

  const view = (rec: LabRecord, envs: Map<string, { spec: boolean; status: EnvStatus }>): Lab => {
    const status = new Map<string, MachineStatus>();
    const lost = new Map<string, string[]>();
    const failed: string[] = [];
    for (const [m, ms] of Object.entries(rec.state.machines)) {
      const e = envs.get(ms.envName);
      if (!e) continue;
      const phase = e.spec ? e.status.phase : EnvPhase.ENV_PHASE_DELETING;
      status.set(m, { node: e.status.node, phase });
      if (phase === EnvPhase.ENV_PHASE_LOST) lost.set(e.status.node, [...(lost.get(e.status.node) ?? []), m]);
      if (phase === EnvPhase.ENV_PHASE_FAILED)
        failed.push(`${m} failed: ${e.status.message || "no reason given"}`);
    }
    const notes = [...lost].map(
      ([node, ms]) =>
        `node ${node} lost with ${ms.join(", ")}: run \`lab up\` again to recreate them elsewhere`,
    );
    notes.push(...failed);
    if (rec.deleting) notes.unshift("being deleted");
    if (rec.message) notes.push(rec.message);
    const lab = labView({
      state: rec.state,
      specYaml: rec.specYaml,
      status,
      createdMs: rec.createdMs,
      message: notes.join("; "),
    });
    if (rec.deleting) lab.phase = LabPhase.LAB_PHASE_DELETING;
    return lab;
  };

  const getRecord = async (name: string) => {
    validateName("lab", name);
    const rec = await store.labStates.get(name);
    if (!rec) {
      throw notFound(`lab ${name} not found`, {
        reason: "LAB_NOT_FOUND",
        subject: `lab/${name}`,
        hint: "see `protoctl lab ls`",
      });
    }
    return rec;
  };

  return {
    applyLab: serverStream<ApplyLabRequest, LabProgress>(async (req, send, call) => {
      const { spec } = loadLabSpec(req.specYaml, "lab.yaml");
      await locks.run(spec.name, () => apply(ctx, waiter, spec, req, send, call));
    }),

    deleteLab: unary(async (req: DeleteLabRequest, call) => {
      await getRecord(req.name);
      const rec = await store.labStates.modify(req.name, (r) =>
        r.deleting ? undefined : { ...r, deleting: true },
      );
      const envs = new Set(Object.values(rec.value.state.machines).map((m) => m.envName));
      for (const it of (await store.envSpecs.list()).items)
        if (it.value.group === req.name) envs.add(it.value.name);
      await Promise.all([...envs].map((e) => deleteEnvSpec(store, e)));
      if (req.wait) {
        const stop = cancelled(call);
        const deadline = Date.now() + WAIT_MS;
        for (;;) {
          if (!(await store.labStates.get(req.name))) break;
          if (Date.now() > deadline) {
            throw new ProtoctlError(Code.DEADLINE_EXCEEDED, `lab ${req.name} is still being deleted`, {
              reason: "LAB_DELETE_SLOW",
              hint: "see `protoctl lab describe` and `protoctl events`",
            });
          }
          await Promise.race([new Promise((r) => setTimeout(r, 25)), stop]);
        }
      }
      return {};
    }),

    listLabs: unary(async () => {
      const [recs, envs] = await Promise.all([store.labStates.list(), statuses()]);
      return { labs: recs.items.map((r) => view(r.value, envs)) };
    }),

    getLab: unary(async (req: GetLabRequest) => {
      const [rec, envs] = await Promise.all([getRecord(req.name), statuses()]);
      return view(rec.value, envs);
    }),

    labGraph: unary(async (req: LabGraphRequest) => {
      const [rec, envs] = await Promise.all([getRecord(req.name), statuses()]);
      return { text: labGraph(view(rec.value, envs), req.format || "dot") };
    }),
  };

  async function apply(
    ctx: ControllerContext,
    waiter: EnvStatusWaiter,
    spec: LabSpec,
    req: ApplyLabRequest,
    send: (m: LabProgress) => void,
    call: ServerWritableStream<ApplyLabRequest, LabProgress>,
  ): Promise<void> {
    const progress = (
      machine: string,
      action: string,
      message = "",
      phase = EnvPhase.ENV_PHASE_UNSPECIFIED,
    ) => send({ machine, action, message, phase, lab: undefined });
    const [cur, all, envs] = await Promise.all([
      store.labStates.get(spec.name),
      store.labStates.list(),
      statuses(),
    ]);
    if (cur?.value.deleting) {
      throw failedPrecondition(`lab ${spec.name} is being deleted`, {
        reason: "LAB_DELETING",
        subject: `lab/${spec.name}`,
        hint: "wait for `protoctl lab down` to finish, then apply again",
      });
    }
    await checkInputs(spec);
    // machines whose env is gone, lost with its node or failed come back (possibly elsewhere)
    const lost: string[] = [];
    for (const [m, ms] of Object.entries(cur?.value.state.machines ?? {})) {
      const e = envs.get(ms.envName);
      if (
        !e?.spec ||
        e.status.phase === EnvPhase.ENV_PHASE_LOST ||
        e.status.phase === EnvPhase.ENV_PHASE_FAILED
      ) {
        lost.push(m);
      }
    }
    const cluster = clusterNetworkIds(
      all.items.map((i) => i.value.state),
      spec.name,
    );
    const plan = planLab(spec, cur?.value.state, { cluster, lost });
    checkMachineSpecs(plan);
    reportPlan(plan, progress);
    const now = Date.now();
    const record: LabRecord = {
      state: plan.state,
      specYaml: req.specYaml,
      createdMs: cur?.value.createdMs ?? now,
      updatedMs: now,
    };
    // ttl: the flag, else the file's, else what an earlier apply set, else the cluster default
    const ttlMs = req.ttlMs || (spec.ttlSeconds ?? 0) * 1000;
    const defaultMs = ctx.config.envs.defaultTtlSeconds * 1000;
    const expiresMs = ttlMs
      ? now + ttlMs
      : cur
        ? (cur.value.expiresMs ?? 0)
        : defaultMs
          ? now + defaultMs
          : 0;
    if (expiresMs) record.expiresMs = expiresMs;
    if (req.dryRun) {
      send({
        machine: "",
        action: "plan",
        message: "dry run: nothing changed",
        phase: 0,
        lab: view(record, envs),
      });
      return;
    }
    await checkNames(spec.name, plan);
    record.rollout = mergeRollout(cur?.value.state, cur?.value.rollout, plan);
    const key = store.keys.labState(spec.name);
    const w = await store.kv.commit({
      conditions: [{ key, modRevision: cur?.modRevision ?? 0 }],
      writes: [
        { op: "put", key, value: codecs.labState.encode(record) },
        await store.events.write({
          kind: cur ? "lab.updated" : "lab.created",
          subject: `lab/${spec.name}`,
          message: summary(plan),
        }),
      ],
    });
    if (!w.succeeded) {
      throw new ProtoctlError(Code.ABORTED, `lab ${spec.name} changed meanwhile; apply again`, {
        reason: "LAB_CONFLICT",
      });
    }
    // the leader's lab loop does the rest (reconcile/lab-rollout.ts); this call only follows it
    const failed = await followRollout({
      store,
      waiter,
      lab: spec.name,
      plan,
      wait: req.wait,
      stop: cancelled(call),
      progress,
      timeoutMs: WAIT_MS,
    });
    const final = await store.labStates.get(spec.name);
    send({
      machine: "",
      action: "done",
      message: summary(plan),
      phase: 0,
      lab: final ? view(final.value, await statuses()) : undefined,
    });
    if (failed.length > 0) {
      throw failedPrecondition(
        `lab ${spec.name}: ${failed.length} machine(s) did not start: ${failed.join("; ")}`,
        {
          reason: "LAB_MACHINES_FAILED",
          subject: `lab/${spec.name}`,
          hint: `see \`protoctl lab describe ${spec.name}\` and \`protoctl events\`; \`lab up\` again retries them`,
        },
      );
    }
  }

  /**
   * What an agent would refuse in a machine's env (a memory limit below 8 MiB, say), refused
   * before anything is written, naming the machine: it used to become a Failed machine.
   */
  function checkMachineSpecs(plan: LabPlan): void {
    for (const m of [...plan.machines.create, ...plan.machines.replace]) {
      try {
        checkSpecFields(m.envSpec);
      } catch (err) {
        const pe = ProtoctlError.from(err);
        throw new ProtoctlError(pe.code, `machine ${m.name}: ${pe.message}`, {
          reason: pe.reason,
          subject: `machine/${m.name}`,
        });
      }
    }
  }

  /** A new machine's env name taken outside the lab: refused before anything is written. */
  async function checkNames(lab: string, plan: LabPlan): Promise<void> {
    for (const m of [...plan.machines.create, ...plan.machines.replace]) {
      const other = await store.envSpecs.get(m.envName);
      if (!other || other.value.group === lab) continue;
      throw new ProtoctlError(Code.ALREADY_EXISTS, `env ${m.envName} exists outside the lab`, {
        reason: "NAME_IN_USE",
        subject: `env/${m.envName}`,
        hint: `delete it with \`protoctl env rm ${m.envName}\` or rename the machine`,
      });
    }
  }

  /** Every base and layer the spec names must be known: lab up does not build or import them. */
  async function checkInputs(spec: LabSpec): Promise<void> {
    const bases = new Map<string, number>();
    const layers = new Set<string>();
    for (const m of spec.machines) {
      bases.set(formatBaseRef(m.base.name, m.base.version), m.base.version);
      for (const l of m.layers) layers.add(l);
    }
    for (const [ref, version] of bases) {
      const name = ref.slice(0, ref.lastIndexOf("@"));
      const ok = version
        ? await store.getBaseVersion(name, version)
        : (await store.bases.get(name))?.value.latest;
      if (!ok) {
        throw failedPrecondition(`base ${version ? ref : name} is not in the cluster`, {
          reason: "BASE_NOT_FOUND",
          subject: `base/${name}`,
          hint: `import it first (\`protoctl base import ${name} --dir DIR\`) or push it to the nodes`,
        });
      }
    }
    for (const l of layers) {
      if (!(await store.layers.get(l))) {
        throw failedPrecondition(`layer ${l} is not in the cluster`, {
          reason: "LAYER_NOT_FOUND",
          subject: `layer/${l}`,
          hint: `add it with \`protoctl layer add ${l} --script FILE\``,
        });
      }
    }
  }
}

function reportPlan(plan: LabPlan, progress: (m: string, action: string, message?: string) => void): void {
  for (const n of plan.networks.create) progress(n.name, "network", `new network ${n.subnet} (vni ${n.vni})`);
  for (const n of plan.networks.delete) progress(n.name, "network", "network removed");
  for (const m of plan.machines.create) progress(m.name, "create", "planned");
  for (const m of plan.machines.replace)
    progress(m.name, "replace", m.reason === "lost" ? "lost: recreating" : "changed: recreating");
  for (const m of plan.machines.delete) progress(m.name, "delete", "planned");
  for (const m of plan.machines.keep) progress(m.name, "keep", "unchanged");
}

function summary(plan: LabPlan): string {
  const m = plan.machines;
  if (plan.noop) return "no change";
  return `${m.create.length} created, ${m.replace.length} replaced, ${m.delete.length} deleted, ${m.keep.length} kept, ${plan.hostsUpdates.length} hosts updated`;
}
