/**
 * Values this process wrote, kept from the write until its watch event
 * arrives, so an informer here takes the object instead of decoding the
 * bytes it was encoded to (informer.ts). The watch stays the source of
 * truth: a value is handed over only for the same key at the same mod
 * revision, the exact write that made it; everything else is decoded as
 * before. Kept only while an informer of the collection runs here (a
 * replica that does not lead has none), and at most MAX_WRITTEN_VALUES.
 *
 * Why: the API writes each new env's spec and status, and the leader's
 * informers decoded both from JSON again (~2 % of the controller's CPU in
 * bench schedule) when the same replica leads.
 */

/** Past this many (events that never came), the oldest go. */
export const MAX_WRITTEN_VALUES = 4096;

export class WrittenValues<T> {
  private readonly values = new Map<string, { modRevision: number; value: T }>();
  private readers = 0;

  /** An informer of the collection starts (true) or stops (false) reading here. */
  reading(on: boolean): void {
    this.readers = Math.max(0, this.readers + (on ? 1 : -1));
    if (this.readers === 0) this.values.clear();
  }

  /** Remembers the value written to `key` at `modRevision` (the value that write encoded). */
  remember(key: string, value: T, modRevision: number): void {
    if (this.readers === 0) return;
    // re-inserted at the end: the map's order is the age order eviction follows
    this.values.delete(key);
    this.values.set(key, { modRevision, value });
    if (this.values.size > MAX_WRITTEN_VALUES) this.values.delete(this.values.keys().next().value!);
  }

  /**
   * The value written to `key` at `modRevision`, if this process wrote it;
   * forgets what it held for the key up to that revision.
   */
  take(key: string, modRevision: number): T | undefined {
    const v = this.values.get(key);
    if (!v || v.modRevision > modRevision) return undefined;
    this.values.delete(key);
    return v.modRevision === modRevision ? v.value : undefined;
  }

  get size(): number {
    return this.values.size;
  }
}
