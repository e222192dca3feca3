/**
 * One watch over env statuses per replica, shared by every `wait=true` call
 * (CreateEnv, StartEnv, DeleteEnv...): thousands of waiters cost one etcd
 * watch, not one each. Started lazily, kept while anyone waits.
 */
import { Code, ProtoctlError } from "../../common/errors.js";
import type { EnvStatus } from "../../proto/gen/protoctl/v1/types.js";
import { type ClusterStore, codecs } from "../store/store.js";

type Check = (st: EnvStatus | undefined) => boolean;

interface Waiter {
  check: Check;
  resolve(st: EnvStatus | undefined): void;
}

export class EnvStatusWaiter {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private cancel: Promise<() => Promise<void>> | undefined;
  private count = 0;

  constructor(private readonly store: ClusterStore) {}

  /**
   * Resolves with the env's status once `check` holds (undefined status =
   * the env is gone). Reads the current value after the watch is up, so no
   * change is missed between the two.
   */
  async wait(
    name: string,
    check: Check,
    timeoutMs: number,
    signal?: Promise<never>,
  ): Promise<EnvStatus | undefined> {
    this.count++;
    this.ensureWatch();
    let w: Waiter | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.cancel;
      const cur = await this.store.envStatus.get(name);
      if (check(cur?.value)) return cur?.value;
      const p = new Promise<EnvStatus | undefined>((resolve) => {
        w = { check, resolve };
        let set = this.waiters.get(name);
        if (!set) {
          set = new Set();
          this.waiters.set(name, set);
        }
        set.add(w);
      });
      const t = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new ProtoctlError(
                Code.DEADLINE_EXCEEDED,
                `env ${name} did not get there within ${Math.round(timeoutMs / 1000)}s`,
                { reason: "WAIT_TIMEOUT", subject: `env/${name}` },
              ),
            ),
          timeoutMs,
        );
      });
      return await Promise.race(signal ? [p, t, signal] : [p, t]);
    } finally {
      if (timer) clearTimeout(timer);
      if (w) this.waiters.get(name)?.delete(w);
      if (this.waiters.get(name)?.size === 0) this.waiters.delete(name);
      if (--this.count === 0) void this.stopWatch();
    }
  }

  private ensureWatch(): void {
    if (this.cancel) return;
    this.cancel = this.store.envStatus.watch(undefined, (events) => {
      for (const e of events) {
        const name = this.store.envStatus.nameOf(e.key);
        const set = name ? this.waiters.get(name) : undefined;
        if (!set) continue;
        let st: EnvStatus | undefined;
        if (e.type === "put" && e.value) {
          try {
            st = codecs.envStatus.decode(e.value);
          } catch {
            continue;
          }
        }
        for (const w of [...set]) if (w.check(st)) w.resolve(st);
      }
    });
  }

  private async stopWatch(): Promise<void> {
    const c = this.cancel;
    this.cancel = undefined;
    if (c) await (await c)();
  }

  async close(): Promise<void> {
    await this.stopWatch();
  }
}
