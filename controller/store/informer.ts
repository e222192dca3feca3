/**
 * An informer: an in-memory copy of one collection kept current by an etcd
 * watch (list, then watch from the list's revision + 1), with change
 * callbacks. The reconcile loops read from informers instead of etcd (cheap,
 * consistent enough: every write they make is conditioned on the mod revision
 * they read, so acting on a stale copy fails safely and is retried).
 */

import type { Versioned } from "./kv.js";
import type { Collection } from "./store.js";

/** `local` is true for changes applied from our own writes (applyLocal). */
export type ChangeHandler<T> = (
  name: string,
  cur: Versioned<T> | undefined,
  prev: Versioned<T> | undefined,
  local: boolean,
) => void;

export class Informer<T> {
  private readonly items = new Map<string, Versioned<T>>();
  private readonly handlers: ChangeHandler<T>[] = [];
  private cancel: (() => Promise<void>) | undefined;
  private synced = false;
  revision = 0;

  constructor(readonly collection: Collection<T>) {}

  onChange(h: ChangeHandler<T>): void {
    this.handlers.push(h);
  }

  async start(): Promise<void> {
    const { items, revision } = await this.collection.list();
    for (const it of items) {
      const name = this.collection.nameOf(it.key);
      if (name) this.set(name, it);
    }
    this.revision = revision;
    this.synced = true;
    this.cancel = await this.collection.watch(revision + 1, (events, rev) => {
      for (const e of events) {
        const name = this.collection.nameOf(e.key);
        if (!name || name.includes("/")) continue;
        if (e.type === "delete") {
          const prev = this.items.get(name);
          if (prev && prev.modRevision > e.modRevision) continue;
          this.items.delete(name);
          this.emit(name, undefined, prev);
          continue;
        }
        const prev = this.items.get(name);
        // a value this process wrote at this very revision: taken as is, not decoded again
        const written = this.collection.written.take(e.key, e.modRevision);
        // our own writes were applied locally already: skip before paying for the decode
        if (prev && prev.modRevision >= e.modRevision) continue;
        let value: T;
        if (written !== undefined) value = written;
        else {
          try {
            value = this.collection.codec.decode(e.value!);
          } catch {
            continue;
          }
        }
        this.set(name, {
          key: e.key,
          value,
          modRevision: e.modRevision,
          createRevision: prev?.createRevision ?? e.modRevision,
          lease: "0",
        });
      }
      this.revision = Math.max(this.revision, rev);
    });
    this.collection.written.reading(true);
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  get(name: string): Versioned<T> | undefined {
    return this.items.get(name);
  }

  list(): Versioned<T>[] {
    return [...this.items.values()];
  }

  names(): string[] {
    return [...this.items.keys()];
  }

  get size(): number {
    return this.items.size;
  }

  /** Applies the result of our own write before its watch event arrives. */
  applyLocal(name: string, value: T | undefined, modRevision: number): void {
    const prev = this.items.get(name);
    if (prev && prev.modRevision >= modRevision) return;
    if (value === undefined) {
      this.items.delete(name);
      this.emit(name, undefined, prev, true);
      return;
    }
    this.set(
      name,
      {
        key: this.collection.key(name),
        value,
        modRevision,
        createRevision: prev?.createRevision ?? modRevision,
        lease: "0",
      },
      true,
    );
  }

  private set(name: string, v: Versioned<T>, local = false): void {
    const prev = this.items.get(name);
    this.items.set(name, v);
    this.emit(name, v, prev, local);
  }

  private emit(
    name: string,
    cur: Versioned<T> | undefined,
    prev: Versioned<T> | undefined,
    local = false,
  ): void {
    if (!this.synced) return;
    for (const h of this.handlers) h(name, cur, prev, local);
  }

  async stop(): Promise<void> {
    if (this.cancel) this.collection.written.reading(false);
    await this.cancel?.();
    this.cancel = undefined;
  }
}
