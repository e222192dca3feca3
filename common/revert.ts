/**
 * Undo on failure for multi-step work (after Incus's revert helper): each
 * step that builds state registers its undo; `fail()` (or leaving a
 * `using`-less scope without `success()`) runs the undos newest first.
 *
 *   const r = new Revert();
 *   await createSubvolume(p); r.add(() => deleteSubvolume(p));
 *   await mount(...);         r.add(() => umount(...));
 *   r.success();              // keep everything
 */
export type Undo = () => unknown | Promise<unknown>;

export class Revert {
  private undos: Undo[] = [];
  private done = false;
  /** Errors thrown by undo steps themselves, kept for logging. */
  readonly undoErrors: unknown[] = [];

  add(undo: Undo): void {
    if (this.done) throw new Error("revert: add after success/fail");
    this.undos.push(undo);
  }

  /** Keeps every step: the undos are dropped. */
  success(): void {
    this.done = true;
    this.undos = [];
  }

  /** Runs the undos newest first; an undo that throws does not stop the rest. */
  async fail(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const undos = this.undos.reverse();
    this.undos = [];
    for (const undo of undos) {
      try {
        await undo();
      } catch (err) {
        this.undoErrors.push(err);
      }
    }
  }

  /** Runs `fn` with a fresh Revert; on throw, reverts and rethrows; on return, keeps. */
  static async run<T>(fn: (r: Revert) => Promise<T>): Promise<T> {
    const r = new Revert();
    try {
      const v = await fn(r);
      r.success();
      return v;
    } catch (err) {
      await r.fail();
      throw err;
    }
  }
}
