/**
 * Source assignment for one push (pure, no I/O): which node a target reads
 * base@N from, so that no source serves more than k peers at once and the
 * fleet grows as a tree. A target becomes a source as soon as it is attached
 * (it serves its seed loop device, which keeps working through its own
 * hydration), so depth grows with log_k(N).
 *
 * A source is usable for target X when it is alive, not X, and either holds
 * the image itself (origin, hydrated) or reads it through a chain of parents
 * that are all alive and do not pass through X (no cycles: X must never read
 * from its own descendants).
 */
export class SourcePicker {
  private readonly load = new Map<string, number>();
  private readonly holds = new Set<string>();
  private readonly parent = new Map<string, string>();
  private readonly dead = new Set<string>();
  private waiters: Array<() => void> = [];

  /** `k` = max peers per source at once (Infinity = star). */
  constructor(readonly k: number) {}

  /** A node holding the image itself (origin, or hydrated). */
  addHolder(node: string): void {
    this.holds.add(node);
    this.parent.delete(node);
    this.load.set(node, this.load.get(node) ?? 0);
    this.wake();
  }

  /** A node attached from `parent` (it can serve others through its own source). */
  addAttached(node: string, parent: string): void {
    this.parent.set(node, parent);
    this.load.set(node, this.load.get(node) ?? 0);
    this.wake();
  }

  markDead(node: string): void {
    this.dead.add(node);
    this.wake();
  }

  isDead(node: string): boolean {
    return this.dead.has(node);
  }

  /** True when `src` may serve `target` (see the file comment). */
  usable(src: string, target: string): boolean {
    const seen = new Set<string>();
    let cur: string | undefined = src;
    while (cur !== undefined) {
      if (cur === target || this.dead.has(cur) || seen.has(cur) || !this.load.has(cur)) return false;
      if (this.holds.has(cur)) return true;
      seen.add(cur);
      cur = this.parent.get(cur);
    }
    return false;
  }

  /** Any usable source at all (ignoring load)? */
  anyUsable(target: string): boolean {
    for (const s of this.load.keys()) if (this.usable(s, target)) return true;
    return false;
  }

  /**
   * The least-loaded usable source under k (holders first, then by name), or
   * undefined when all are busy or none is usable. Takes a slot.
   */
  acquire(target: string): string | undefined {
    let best: string | undefined;
    for (const [s, l] of this.load) {
      if (l >= this.k || !this.usable(s, target)) continue;
      if (best === undefined) {
        best = s;
        continue;
      }
      const bl = this.load.get(best)!;
      const better =
        l < bl ||
        (l === bl && this.holds.has(s) && !this.holds.has(best)) ||
        (l === bl && this.holds.has(s) === this.holds.has(best) && s < best);
      if (better) best = s;
    }
    if (best !== undefined) this.load.set(best, this.load.get(best)! + 1);
    return best;
  }

  release(src: string): void {
    const l = this.load.get(src);
    if (l !== undefined) this.load.set(src, Math.max(0, l - 1));
    this.wake();
  }

  /** Resolves when something changed (a slot freed, a source added or lost). */
  changed(timeoutMs = 1000): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
