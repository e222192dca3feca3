/**
 * Work a user is waiting for right now (env creates), so that background
 * work that competes for the same disk and CPU (the seed publish at seal)
 * can wait for a quiet moment. Measured: a seal publish running beside the
 * first `env create` after `base build` made that create 1.3–2× slower
 * (its root snapshot 176–346 ms against 34–122 ms), on a 2-core node.
 */
export class ForegroundActivity {
  private inFlight = 0;
  private lastEndMs = 0;
  private readonly waiters = new Set<() => void>();

  /** Marks one piece of foreground work; the returned function ends it (once). */
  begin(): () => void {
    this.inFlight++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.inFlight--;
      this.lastEndMs = Date.now();
      for (const w of [...this.waiters]) w();
    };
  }

  /** Runs fn as foreground work. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const end = this.begin();
    try {
      return await fn();
    } finally {
      end();
    }
  }

  /** How long until nothing has been in flight for quietMs (0: quiet now); Infinity while busy. */
  untilQuiet(quietMs: number, nowMs = Date.now()): number {
    if (this.inFlight > 0) return Number.POSITIVE_INFINITY;
    return Math.max(0, this.lastEndMs + quietMs - nowMs);
  }

  /** Calls fn each time a piece of work ends, until the returned function is called. */
  onEnd(fn: () => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }
}
