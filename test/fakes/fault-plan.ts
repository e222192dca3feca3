/**
 * Failures a fake driver raises on demand, so a service's failure paths run
 * in unit tests: `failNext("start", err)` makes the next call of that
 * operation throw `err` (once); calls are recorded in order for assertions.
 */
export class FaultPlan<Op extends string> {
  private readonly planned = new Map<Op, Error[]>();
  /** Every operation called, in order, with its first argument when it is a string. */
  readonly calls: string[] = [];

  failNext(op: Op, err: Error): void {
    const list = this.planned.get(op) ?? [];
    list.push(err);
    this.planned.set(op, list);
  }

  /** Records the call and throws the planned error, if any. */
  hit(op: Op, subject?: string): void {
    this.calls.push(subject === undefined ? op : `${op}:${subject}`);
    const err = this.planned.get(op)?.shift();
    if (err) throw err;
  }

  /** The recorded calls of one operation, as their subjects. */
  callsOf(op: Op): string[] {
    const p = `${op}:`;
    return this.calls.filter((c) => c === op || c.startsWith(p)).map((c) => c.slice(p.length));
  }
}
