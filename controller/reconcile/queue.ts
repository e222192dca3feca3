/**
 * A work queue in the manner of client-go's: keys, not events. A key added
 * while waiting is stored once; a key added while being processed is marked
 * dirty and processed again afterwards (never twice at the same time). Failed
 * keys come back after a per-key exponential backoff; a terminal error drops
 * the key until something adds it again.
 */

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export type ReconcileResult = { requeueAfterMs?: number } | undefined;

/** Thrown (or wrapped) by a reconcile function to say: retrying will not help. */
export class TerminalError extends Error {
  override readonly name = "TerminalError";
}

export interface QueueOptions {
  backoff?: Backoff;
  /** Max keys processed concurrently. */
  concurrency?: number;
  now?: () => number;
}

export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private waiters: (() => void)[] = [];
  private shuttingDown = false;
  readonly backoff: Backoff;
  readonly concurrency: number;

  constructor(opts: QueueOptions = {}) {
    this.backoff = opts.backoff ?? { baseMs: 100, maxMs: 30_000 };
    this.concurrency = opts.concurrency ?? 16;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.ready.push(key);
    const w = this.waiters.shift();
    w?.();
  }

  /** Adds the key after a delay (an earlier pending delay for the key wins). */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const t = this.timers.get(key);
    if (t && t.at <= at) return;
    if (t) clearTimeout(t.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.timers.set(key, { at, timer });
  }

  /** The delay before the n-th retry (n >= 1) of a key. */
  delayFor(attempt: number): number {
    return Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** Math.max(0, attempt - 1));
  }

  /** Records a failure and schedules the retry; returns the delay used. */
  retry(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const d = this.delayFor(n);
    this.addAfter(key, d);
    return d;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  attempts(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Whether the key is being processed right now. */
  isActive(key: string): boolean {
    return this.active.has(key);
  }

  get length(): number {
    return this.ready.length;
  }

  get processing(): number {
    return this.active.size;
  }

  /** Waits for the next key; undefined once shut down. */
  async get(): Promise<string | undefined> {
    while (this.ready.length === 0) {
      if (this.shuttingDown) return undefined;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const key = this.ready.shift()!;
    this.queued.delete(key);
    this.active.add(key);
    return key;
  }

  /** Marks a key processed; re-adds it when it changed meanwhile. */
  done(key: string): void {
    this.active.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * Runs `fn` over keys with `concurrency` workers until shutdown. Errors are
   * retried with backoff, except TerminalError; a result with
   * requeueAfterMs looks again later (and resets the backoff).
   */
  async run(
    fn: (key: string) => Promise<ReconcileResult>,
    onError?: (key: string, err: unknown, retryInMs?: number) => void,
  ): Promise<void> {
    const worker = async () => {
      for (;;) {
        const key = await this.get();
        if (key === undefined) return;
        try {
          const res = await fn(key);
          this.forget(key);
          if (res?.requeueAfterMs !== undefined) this.addAfter(key, res.requeueAfterMs);
        } catch (err) {
          if (err instanceof TerminalError || (err as { terminal?: boolean })?.terminal === true) {
            this.forget(key);
            onError?.(key, err);
          } else {
            const d = this.retry(key);
            onError?.(key, err, d);
          }
        } finally {
          this.done(key);
        }
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, worker));
  }
}
