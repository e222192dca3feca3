/**
 * Source assignment for one push (pure, no I/O): which node a target reads
 * base@N from. Two kinds of use, counted apart:
 *
 *   lazy      the target attaches and reads only the blocks its envs touch.
 *             Light, and what "usable" waits for, so it is not held back by
 *             copies: a source takes up to `lazyK` such peers (default
 *             max(16, 4k)). Holders (origin, hydrated nodes) first; when they
 *             are full, an attached node serves through its own source (it
 *             exports its seed loop device), so a large fleet grows a tree of
 *             lazy readers too.
 *   hydrate   the target copies the whole image. Heavy, so at most `k` at
 *             once per source, and only from holders (a chained copy would
 *             move every block twice). Hydrated nodes become holders, so the
 *             copying fleet doubles per round (k=2): log(N) rounds, not N.
 *
 * A source is usable for target X when it is alive, not X, and either holds
 * the image itself or reads it through a chain of parents that are all alive
 * and do not pass through X (no cycles: X never reads from its descendants).
 */
export type SourceUse = "lazy" | "hydrate";

export class SourcePicker {
  private readonly load = new Map<string, number>();
  private readonly lazyLoad = new Map<string, number>();
  private readonly holds = new Set<string>();
  private readonly parent = new Map<string, string>();
  private readonly dead = new Set<string>();
  private waiters: Array<() => void> = [];
  readonly lazyK: number;

  /** `k` = max copies per source at once (Infinity = star). */
  constructor(
    readonly k: number,
    lazyK?: number,
  ) {
    this.lazyK = lazyK ?? Math.max(16, 4 * k);
  }

  /** A node holding the image itself (origin, or hydrated). */
  addHolder(node: string): void {
    this.holds.add(node);
    this.parent.delete(node);
    this.known(node);
    this.wake();
  }

  /** A node attached from `parent` (it can serve lazy readers through its own source). */
  addAttached(node: string, parent: string): void {
    if (!this.holds.has(node)) this.parent.set(node, parent);
    this.known(node);
    this.wake();
  }

  private known(node: string): void {
    this.load.set(node, this.load.get(node) ?? 0);
    this.lazyLoad.set(node, this.lazyLoad.get(node) ?? 0);
  }

  markDead(node: string): void {
    this.dead.add(node);
    this.wake();
  }

  isDead(node: string): boolean {
    return this.dead.has(node);
  }

  isHolder(node: string): boolean {
    return this.holds.has(node);
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

  /** Any source at all (ignoring load) for this use? */
  anyUsable(target: string, use: SourceUse = "lazy"): boolean {
    for (const s of this.load.keys()) {
      if ((use === "lazy" || this.holds.has(s)) && this.usable(s, target)) return true;
    }
    return false;
  }

  /**
   * The best source with a free slot for this use (holders first, then the
   * least loaded, then by name), or undefined when all are busy or none is
   * usable. Takes a slot; give it back with release(src, use).
   */
  acquire(target: string, use: SourceUse = "hydrate"): string | undefined {
    const loads = use === "lazy" ? this.lazyLoad : this.load;
    const limit = use === "lazy" ? this.lazyK : this.k;
    let best: string | undefined;
    for (const [s, l] of loads) {
      if (l >= limit || (use === "hydrate" && !this.holds.has(s)) || !this.usable(s, target)) continue;
      if (best === undefined) {
        best = s;
        continue;
      }
      const bl = loads.get(best)!;
      const sh = this.holds.has(s);
      const bh = this.holds.has(best);
      const better = (sh && !bh) || (sh === bh && (l < bl || (l === bl && s < best)));
      if (better) best = s;
    }
    if (best !== undefined) loads.set(best, loads.get(best)! + 1);
    return best;
  }

  release(src: string, use: SourceUse = "hydrate"): void {
    const loads = use === "lazy" ? this.lazyLoad : this.load;
    const l = loads.get(src);
    if (l !== undefined) loads.set(src, Math.max(0, l - 1));
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
