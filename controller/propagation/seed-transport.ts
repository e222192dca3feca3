/**
 * The seed transport for one target, carried out on the agents: attach
 * lazily from a source the SourcePicker gives (usable at once), then hydrate
 * from a holder once every target of the push is attached, moving to another
 * source when one is lost and waiting for a target whose agent restarts.
 * Each step is recorded as an attachment (etcd), so a later pass finds where
 * the target is.
 */
import { Code, ProtoctlError, unavailable } from "../../common/errors.js";
import { fromServiceError } from "../../common/grpc.js";
import { AttachmentPhase, type Export, type OperationEvent } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { collect, type PushRun, progress } from "./run.js";
import type { SeedKeeper } from "./seeds.js";
import type { SourceUse } from "./sources.js";

const MAX_ATTEMPTS = 6;
/** How long a push waits for a target whose agent stopped answering (a restart) before failing it. */
const TARGET_RETURN_MS = 60_000;

export class SeedTransport {
  constructor(
    private readonly ctx: ControllerContext,
    private readonly seeds: SeedKeeper,
  ) {}

  private async exportOn(r: PushRun, node: string): Promise<string> {
    let p = r.exports.get(node);
    if (!p) {
      p = (async () => {
        const c = await this.ctx.agents.forNode(this.ctx.store, node);
        const exp = await new Promise<Export>((resolve, reject) =>
          c.serveExport(
            {
              ref: { name: r.base, version: r.version },
              bindAddress: "",
              port: 0,
              maxClients: r.maxClients,
              allow: [],
            },
            (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)),
          ),
        );
        await this.ctx.store.putExport(exp);
        return exp.uri;
      })();
      r.exports.set(node, p);
      p.catch(() => r.exports.delete(node));
    }
    return p;
  }

  /**
   * Seed transport for one target, in two steps: attach lazily (a lazy slot
   * on any source: usable at once), then hydrate (a copy slot on a holder,
   * at most k per holder; the agent switches its seed to that holder if it
   * is another node). A lost source is replaced in either step.
   */
  async push(r: PushRun, target: string, markUsable: () => void): Promise<void> {
    const seed = r.seed;
    if (!seed) throw new ProtoctlError(Code.INTERNAL, `no seed of ${r.ref} for ${target}`);
    const c = await this.ctx.agents.forNode(this.ctx.store, target);
    const ref = { name: r.base, version: r.version };
    let lazySrc: string | undefined;
    let recorded: Promise<void> = Promise.resolve();
    try {
      lazySrc = await this.withSource(r, target, "lazy", async (src, uri) => {
        await collect(c.attach({ ref, uri, seed, hydrate: false, sourceNode: src }), () => undefined);
        r.picker.addAttached(target, src);
        r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHED, { sourceNode: src }));
        recorded = this.record(r, target, src, uri, AttachmentPhase.ATTACHMENT_PHASE_ATTACHED, 0);
        markUsable();
      });
      // Copies wait until every target of the push is attached: an attach is a few small reads and
      // what "usable" waits for; a copy is the whole image and would slow the attaches still going
      // (CPU, the sources' bandwidth), so usable-everywhere comes first, then local-everywhere.
      await r.allAttached;
      // On record before the copy: a leader that takes over mid-copy finds this push unfinished.
      await recorded;
      const src = await this.withSource(r, target, "hydrate", async (src, uri) => {
        let lastPct = -10;
        await collect(c.attach({ ref, uri, seed, hydrate: true, sourceNode: src }), (ev: OperationEvent) => {
          if (ev.event?.$case !== "progress") return;
          const p = ev.event.progress;
          if (p.step === "hydrating" && p.fraction - lastPct / 100 >= 0.1) {
            lastPct = Math.floor(p.fraction * 10) * 10;
            r.send(
              progress(target, AttachmentPhase.ATTACHMENT_PHASE_HYDRATING, {
                fraction: p.fraction,
                sourceNode: src,
              }),
            );
          }
        });
      });
      r.picker.addHolder(target);
      r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_LOCAL, { fraction: 1, sourceNode: src }));
      await this.record(r, target, src, "", AttachmentPhase.ATTACHMENT_PHASE_LOCAL, 1);
      // hydrated: the agent verified the copy against the checksum this push passed (the seal's)
      await this.seeds.addHolder(r.base, r.version, target);
    } finally {
      if (lazySrc) r.picker.release(lazySrc, "lazy");
    }
  }

  /**
   * Runs `step` with a source for `use` (waiting for a free slot), retrying
   * with another source while the failure is the source's; resolves with the
   * source that worked. The lazy slot stays taken on success (the target
   * reads through it until it is local); the copy slot is given back.
   */
  private async withSource(
    r: PushRun,
    target: string,
    use: SourceUse,
    step: (src: string, uri: string) => Promise<void>,
  ): Promise<string> {
    let lastErr: ProtoctlError | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let src = r.picker.acquire(target, use);
      while (!src) {
        if (!r.picker.anyUsable(target, use)) {
          const pe = unavailable(
            `no source of ${r.ref} is left for ${target}${lastErr ? ` (last error: ${lastErr.message})` : ""}`,
            {
              reason: "NO_SOURCE",
              subject: `base/${r.ref}`,
              hint: "push again once a node holding it is Ready",
            },
          );
          r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: pe.message }));
          throw pe;
        }
        await r.picker.changed();
        src = r.picker.acquire(target, use);
      }
      try {
        const uri = await this.exportOn(r, src).catch((err) => {
          throw Object.assign(ProtoctlError.from(err), { sourceFailed: true });
        });
        await step(src, uri);
        if (use === "hydrate") r.picker.release(src, use);
        return src;
      } catch (err) {
        r.picker.release(src, use);
        const pe = ProtoctlError.from(err);
        lastErr = pe;
        this.ctx.log.warn(
          { ref: r.ref, target, source: src, use, code: Code[pe.code], err: pe.message },
          "push step failed",
        );
        const sourceLost =
          pe.code === Code.UNAVAILABLE ||
          (pe as ProtoctlError & { sourceFailed?: boolean }).sourceFailed === true;
        if (pe.code === Code.UNAVAILABLE && !(await this.alive(target))) {
          // The target went away (an agent restart): its attachment survives it (the agent adopts
          // it), so wait for the agent and go on with the same step, not another source.
          r.send(
            progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHING, {
              sourceNode: src,
              message: `${target} does not answer: waiting for it`,
            }),
          );
          if (await this.waitAlive(target, TARGET_RETURN_MS)) {
            attempt--;
            continue;
          }
          const lost = unavailable(`${target} did not come back within ${TARGET_RETURN_MS / 1000} s`, {
            reason: "TARGET_UNAVAILABLE",
            subject: `node/${target}`,
            hint: "push again once the node is Ready",
          });
          r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: lost.message }));
          throw lost;
        }
        if (!sourceLost) {
          r.send(
            progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, {
              message: pe.message,
              sourceNode: src,
            }),
          );
          await this.record(r, target, src, "", AttachmentPhase.ATTACHMENT_PHASE_FAILED, 0, pe.message);
          throw pe;
        }
        // The source (or the chain behind it) is gone: attach or switch to another one.
        if (!(await this.alive(src))) r.picker.markDead(src);
        r.send(
          progress(target, AttachmentPhase.ATTACHMENT_PHASE_ATTACHING, {
            sourceNode: src,
            message: `source ${src} lost (${pe.message}): re-attaching`,
          }),
        );
        await r.picker.changed(200);
      }
    }
    const pe = unavailable(`giving up on ${target} after ${MAX_ATTEMPTS} sources: ${lastErr?.message}`, {
      reason: "NO_SOURCE",
    });
    r.send(progress(target, AttachmentPhase.ATTACHMENT_PHASE_FAILED, { message: pe.message }));
    throw pe;
  }

  /** Polls until the node's agent answers; false after `ms`. */
  private async waitAlive(node: string, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await this.alive(node)) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  }

  /** True when the node's agent answers (a failed attach may be the target's fault, not the source's). */
  private alive(node: string): Promise<boolean> {
    return this.ctx.agents.alive(this.ctx.store, node);
  }

  private async record(
    r: PushRun,
    node: string,
    source: string,
    uri: string,
    phase: AttachmentPhase,
    fraction: number,
    message = "",
  ): Promise<void> {
    await this.ctx.store
      .putAttachment({
        base: r.base,
        version: r.version,
        node,
        sourceNode: source,
        uri,
        phase,
        hydratedFraction: fraction,
        message,
        transport: "seed",
        checksum: r.seed?.checksum ?? "",
      })
      .catch((err) => this.ctx.log.warn({ err: (err as Error).message }, "attachment record failed"));
  }
}
