/**
 * Leader election over etcd (etcd3's Election: a campaign key bound to a
 * lease of electionTtlSeconds). The winner runs the reconcile loops; every
 * replica observes who leads (for GetVersion and logs). When the campaign
 * errors (lease lost: etcd unreachable past the TTL) the loops stop at once
 * and the replica campaigns again.
 *
 * Fencing: the loops' writes carry a condition on the campaign key's mod
 * revision, so a leader that lost its lease (and so its key) cannot write
 * even if it has not noticed yet.
 */
import type { Campaign, ElectionObserver } from "etcd3";
import type { Logger } from "../common/logger.js";
import type { LeaderState } from "./context.js";
import type { Condition } from "./store/kv.js";
import type { ClusterStore } from "./store/store.js";

export interface LeaderCallbacks {
  onElected(fence: () => Condition[]): Promise<void>;
  onDeposed(): Promise<void>;
}

export class LeaderElection implements LeaderState {
  private campaign: Campaign | undefined;
  private observer: ElectionObserver | undefined;
  private leading = false;
  private current = "";
  private stopped = false;
  private fenceKey: Condition | undefined;
  private transition: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ClusterStore,
    private readonly id: string,
    private readonly ttlSeconds: number,
    private readonly cb: LeaderCallbacks,
    private readonly log: Logger,
  ) {}

  isLeader(): boolean {
    return this.leading;
  }

  leaderId(): string {
    return this.current;
  }

  private election() {
    return this.store.client
      .namespace(this.store.keys.folder("election"))
      .election("leader", Math.max(2, this.ttlSeconds));
  }

  async start(): Promise<void> {
    this.observe();
    this.run();
  }

  private observe(): void {
    this.election()
      .observe()
      .then((o) => {
        if (this.stopped) {
          void o.cancel();
          return;
        }
        this.observer = o;
        this.current = o.leader() ?? "";
        o.on("change", (v) => {
          this.current = v ?? "";
        });
        o.on("error", () => {
          this.observer = undefined;
          if (!this.stopped) setTimeout(() => this.observe(), 500);
        });
      })
      .catch(() => {
        if (!this.stopped) setTimeout(() => this.observe(), 500);
      });
  }

  private run(): void {
    if (this.stopped) return;
    const c = this.election().campaign(this.id);
    this.campaign = c;
    c.on("elected", () => {
      this.transition = this.transition.then(async () => {
        if (this.campaign !== c || this.stopped) return;
        try {
          const key = await c.getCampaignKey();
          const kv = await this.store.client.kv.range({ key: Buffer.from(key) });
          const rev = Number(kv.kvs[0]?.mod_revision ?? 0);
          if (!rev) throw new Error("campaign key vanished");
          this.fenceKey = { key, modRevision: rev };
          this.leading = true;
          this.current = this.id;
          this.log.info({ id: this.id }, "elected leader");
          await this.cb.onElected(() => (this.fenceKey ? [this.fenceKey] : [{ key, modRevision: -1 }]));
        } catch (err) {
          this.log.error({ err: (err as Error).message }, "could not take over as leader");
          await this.depose(c);
        }
      });
    });
    c.on("error", (err) => {
      this.log.warn({ err: err.message }, "leader campaign failed; campaigning again");
      this.transition = this.transition.then(() => this.depose(c));
    });
  }

  private async depose(c: Campaign): Promise<void> {
    if (this.campaign !== c) return;
    this.campaign = undefined;
    this.fenceKey = undefined;
    if (this.leading) {
      this.leading = false;
      this.log.warn({ id: this.id }, "no longer leader");
      await this.cb.onDeposed().catch(() => undefined);
    }
    await c.resign().catch(() => undefined);
    if (!this.stopped) this.retryTimer = setTimeout(() => this.run(), 500);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const c = this.campaign;
    await this.transition;
    if (this.leading) {
      this.leading = false;
      await this.cb.onDeposed().catch(() => undefined);
    }
    this.campaign = undefined;
    this.fenceKey = undefined;
    if (c) await c.resign().catch(() => undefined);
    await this.observer?.cancel().catch(() => undefined);
  }
}
