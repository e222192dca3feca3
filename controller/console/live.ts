/**
 * Keeps the console's picture current for every open tab: one etcd watch
 * on the cluster's prefix (opened while at least one tab listens), a
 * rebuild of the view model at most every 100 ms after a change, and the
 * event log's own watch for the event stream.
 */
import type { Event } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { type ConsoleState, consoleState } from "./view-model.js";

export interface LiveListener {
  state(s: ConsoleState): void;
  events(e: Event[]): void;
}

const DEBOUNCE_MS = 100;
/** A slow heartbeat picks up what no key change announces (a node's lease expiring is a delete, seen; clocks). */
const REFRESH_MS = 5000;

export class ConsoleLive {
  private readonly listeners = new Set<LiveListener>();
  private stopWatch: (() => Promise<void>) | undefined;
  private stopEvents: (() => Promise<void>) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private refresh: NodeJS.Timeout | undefined;
  private building = false;
  private again = false;
  last: ConsoleState | undefined;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly cluster: () => string,
  ) {}

  async subscribe(l: LiveListener): Promise<() => void> {
    this.listeners.add(l);
    if (this.listeners.size === 1) await this.open();
    const state = this.last ?? (await this.build());
    if (state) l.state(state);
    return () => {
      this.listeners.delete(l);
      if (this.listeners.size === 0) void this.close();
    };
  }

  private async open(): Promise<void> {
    const s = this.ctx.store;
    const eventsFolder = s.keys.folder("events");
    const { revision } = await s.kv.list(eventsFolder, {
      encode: (b: Buffer) => b,
      decode: (b: Buffer) => b,
    });
    this.stopWatch = await s.kv.watch(this.ctx.config.etcd.prefix, undefined, (evs) => {
      if (evs.some((e) => !e.key.startsWith(eventsFolder))) this.changed();
    });
    this.stopEvents = await s.events.watch(revision + 1, (evs) => {
      for (const l of this.listeners) l.events(evs);
    });
    this.refresh = setInterval(() => this.changed(), REFRESH_MS);
    this.refresh.unref();
  }

  private async close(): Promise<void> {
    clearInterval(this.refresh);
    clearTimeout(this.timer);
    this.timer = undefined;
    const [a, b] = [this.stopWatch, this.stopEvents];
    this.stopWatch = this.stopEvents = undefined;
    this.last = undefined;
    await Promise.all([a?.().catch(() => undefined), b?.().catch(() => undefined)]);
  }

  async stop(): Promise<void> {
    this.listeners.clear();
    await this.close();
  }

  private changed(): void {
    if (this.timer || this.listeners.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.build();
    }, DEBOUNCE_MS);
  }

  private async build(): Promise<ConsoleState | undefined> {
    if (this.building) {
      this.again = true;
      return this.last;
    }
    this.building = true;
    try {
      const s = await consoleState(this.ctx, this.cluster());
      this.last = s;
      for (const l of this.listeners) l.state(s);
      return s;
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message }, "console: reading the cluster failed");
      return this.last;
    } finally {
      this.building = false;
      if (this.again) {
        this.again = false;
        this.changed();
      }
    }
  }
}
