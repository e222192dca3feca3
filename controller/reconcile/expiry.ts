/**
 * Expiry (TTL): the leader deletes an env whose spec's `expiresMs` has passed,
 * and a whole lab whose record's `expiresMs` has passed. The time is desired
 * state in etcd, so a new leader (fresh informers) re-arms the same timer: an
 * expiry survives failover and is late by at most the takeover time.
 *
 * One timer for the earliest expiry, re-armed on every spec or lab change;
 * a sweep deletes everything due. Envs with an expiry are indexed as their
 * specs change, so a re-arm looks at those, not at every env (a burst of
 * creates without a TTL then costs nothing here). Deletes are conditioned on the object's mod
 * revision (an `env extend` in between wins) and on the leader fence, and
 * carry their event in the same transaction.
 */
import type { Logger } from "../../common/logger.js";
import type { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import type { Informer } from "../store/informer.js";
import type { Condition, Versioned } from "../store/kv.js";
import type { ClusterStore, LabRecord } from "../store/store.js";
import { codecs } from "../store/store.js";

/** setTimeout's largest delay; a later expiry just re-arms. */
const MAX_DELAY_MS = 2 ** 31 - 1;
const RETRY_MS = 1000;

export interface ExpiryDeps {
  store: ClusterStore;
  specs: Informer<EnvSpec>;
  labs: Informer<LabRecord>;
  fence: () => Condition[];
  log: Logger;
  now?: () => number;
}

export class ExpiryReconciler {
  private timer: NodeJS.Timeout | undefined;
  private armedFor = 0;
  private stopped = false;
  private sweeping: Promise<void> | undefined;
  private armPending = false;
  private readonly now: () => number;
  /** env → its spec's expiresMs, for the envs that have one; undefined until the first arm. */
  private envDue: Map<string, number> | undefined;

  constructor(private readonly d: ExpiryDeps) {
    this.now = d.now ?? Date.now;
  }

  /** Subscribes to changes; call before the informers start, then `arm()` once they are synced. */
  start(): void {
    this.d.specs.onChange((name, cur) => {
      const at = cur?.value.expiresMs ?? 0;
      const had = this.envDue?.has(name) ?? false;
      if (at > 0) this.envDue?.set(name, at);
      else this.envDue?.delete(name);
      // an env that neither has nor had an expiry cannot move the timer
      if (at > 0 || had || !this.envDue) this.armSoon();
    });
    this.d.labs.onChange(() => this.armSoon());
  }

  /**
   * A burst of changes (a thousand creates) re-arms once: `arm()` looks at every env, so one
   * look per change would cost the burst time quadratic in its size.
   */
  private armSoon(): void {
    if (this.armPending) return;
    this.armPending = true;
    setImmediate(() => {
      this.armPending = false;
      this.arm();
    });
  }

  /** The earliest pending expiry (ms since the epoch), 0 when none. */
  nextExpiry(): number {
    let next = 0;
    const take = (t: number | undefined) => {
      if (t && t > 0 && (next === 0 || t < next)) next = t;
    };
    for (const t of this.due().values()) take(t);
    for (const l of this.d.labs.list()) if (!l.value.deleting) take(l.value.expiresMs);
    return next;
  }

  /** The env index, built from the informer on first use (it emits no change for its initial list). */
  private due(): Map<string, number> {
    if (!this.envDue) {
      this.envDue = new Map();
      for (const name of this.d.specs.names()) {
        const at = this.d.specs.get(name)?.value.expiresMs ?? 0;
        if (at > 0) this.envDue.set(name, at);
      }
    }
    return this.envDue;
  }

  /** (Re)arms the timer for the earliest expiry. */
  arm(): void {
    if (this.stopped) return;
    const next = this.nextExpiry();
    if (next === this.armedFor && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = next;
    if (!next) return;
    const delay = Math.min(MAX_DELAY_MS, Math.max(0, next - this.now()));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.armedFor = 0;
      this.sweeping = this.sweep().then(
        () => this.arm(),
        (err) => {
          this.d.log.warn({ err: (err as Error).message }, "expiry sweep failed; retrying");
          if (!this.stopped) this.timer = setTimeout(() => this.arm(), RETRY_MS);
        },
      );
    }, delay);
  }

  /** Deletes every env and lab that is due. Safe to run twice. */
  async sweep(): Promise<void> {
    const now = this.now();
    const failures: Error[] = [];
    for (const lab of this.d.labs.list()) {
      const at = lab.value.expiresMs ?? 0;
      if (lab.value.deleting || !at || at > now) continue;
      await this.expireLab(lab).catch((err: Error) => failures.push(err));
    }
    for (const [name, due] of [...this.due()]) {
      const spec = this.d.specs.get(name);
      const at = spec?.value.expiresMs;
      if (!spec || !at || at > now || due > now) continue;
      await this.expireEnv(spec, at).catch((err: Error) => failures.push(err));
    }
    if (failures.length > 0) throw failures[0];
  }

  private async expireEnv(spec: Versioned<EnvSpec>, at: number): Promise<void> {
    const name = spec.value.name;
    const r = await this.d.store.kv.commit({
      conditions: [...this.d.fence(), { key: spec.key, modRevision: spec.modRevision }],
      writes: [
        { op: "delete", key: spec.key },
        await this.d.store.events.write({
          kind: "env.expired",
          subject: `env/${name}`,
          message: `env ${name} expired (ttl ended ${new Date(at).toISOString()}); deleting`,
        }),
      ],
    });
    // A lost race (extended, deleted, or leadership lost) is not an error: the informer brings the new picture.
    if (r.succeeded) {
      this.d.specs.applyLocal(name, undefined, r.revision);
      this.d.log.info({ env: name }, "env expired");
    }
  }

  private async expireLab(lab: Versioned<LabRecord>): Promise<void> {
    const name = lab.value.state.name;
    const value: LabRecord = { ...lab.value, deleting: true, message: "expired" };
    const r = await this.d.store.kv.commit({
      conditions: [...this.d.fence(), { key: lab.key, modRevision: lab.modRevision }],
      writes: [
        { op: "put", key: lab.key, value: codecs.labState.encode(value) },
        await this.d.store.events.write({
          kind: "lab.expired",
          subject: `lab/${name}`,
          message: `lab ${name} expired; deleting its envs`,
        }),
      ],
    });
    if (!r.succeeded) return;
    this.d.log.info({ lab: name }, "lab expired");
    // its envs: those the lab state lists and any env of the lab's group (as `lab down` does)
    const envs = new Set(Object.values(lab.value.state.machines).map((m) => m.envName));
    for (const s of this.d.specs.list()) if (s.value.group === name) envs.add(s.value.name);
    for (const env of envs) {
      const s = this.d.specs.get(env);
      if (!s) continue;
      const d = await this.d.store.kv.commit({
        conditions: [...this.d.fence(), { key: s.key, modRevision: s.modRevision }],
        writes: [{ op: "delete", key: s.key }],
      });
      if (d.succeeded) this.d.specs.applyLocal(env, undefined, d.revision);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.sweeping?.catch(() => undefined);
  }
}
