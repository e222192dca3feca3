/**
 * The few protobuf messages the fast entry sends and reads, encoded by hand:
 * ExecInput (start without options, stdin_eof, signal), ExecOutput,
 * VersionInfo, CreateEnvRequest (a name and a base only), the Env it returns
 * (the status fields the CLI prints) and ControlDeleteEnvRequest. The
 * generated code (proto/gen) would pull @bufbuild/protobuf and every message
 * of types.proto into the start-up; wire.test.ts checks
 * these bytes against it both ways. Unknown fields are skipped, as protobuf
 * readers must.
 */

const utf8 = new TextEncoder();

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field. */
function lenField(field: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((field << 3) | 2), ...varint(bytes.length)]), bytes]);
}

/** ExecInput{start: ExecStart{env, command}} (no tty, env vars, workdir, user, size, login). */
export function encodeExecStart(env: string, command: readonly string[]): Buffer {
  const start = Buffer.concat([
    lenField(1, utf8.encode(env)),
    ...command.map((arg) => lenField(2, utf8.encode(arg))),
  ]);
  return lenField(1, start);
}

/** ExecInput{stdin_eof: true} */
export function encodeStdinEof(): Buffer {
  return Buffer.from([(3 << 3) | 0, 1]);
}

/** ExecInput{signal} */
export function encodeSignal(signal: string): Buffer {
  return lenField(5, utf8.encode(signal));
}

function varintField(field: number, n: number): Buffer {
  return Buffer.from([...varint(field << 3), ...varint(n)]);
}

/**
 * CreateEnvRequest{spec, wait: true} for `env create NAME --base BASE[@N]`:
 * the EnvSpec cli/commands/env.ts envSpecFromFlags builds with no other flag
 * (empty resources, network none, restart never, start).
 */
export function encodeCreateEnv(env: string, base: string, version: number): Buffer {
  const ref = Buffer.concat([
    lenField(1, utf8.encode(base)),
    ...(version > 0 ? [varintField(2, version)] : []),
  ]);
  const spec = Buffer.concat([
    lenField(1, utf8.encode(env)),
    lenField(2, ref),
    lenField(5, new Uint8Array(0)), // resources: none
    lenField(6, varintField(1, 1)), // network: NETWORK_MODE_NONE
    varintField(13, 1), // RESTART_POLICY_NEVER
    varintField(14, 1), // start
  ]);
  return Buffer.concat([lenField(1, spec), varintField(2, 1)]);
}

/** ControlDeleteEnvRequest{name, wait: true} */
export function encodeDeleteEnv(env: string): Buffer {
  return Buffer.concat([lenField(1, utf8.encode(env)), varintField(2, 1)]);
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  /** A varint as a BigInt (up to 64 bits). */
  varint(): bigint {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, v);
    }
    throw new Error("varint too long");
  }
  bytes(): Buffer {
    const len = Number(this.varint());
    if (this.pos + len > this.buf.length) throw new Error("truncated field");
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 2) this.bytes();
    else if (wire === 1 || wire === 5) {
      this.pos += wire === 1 ? 8 : 4;
      if (this.pos > this.buf.length) throw new Error("truncated field");
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

export type ExecOutputMsg =
  | { kind: "startedPid"; pid: number }
  | { kind: "stdout" | "stderr"; data: Buffer }
  | { kind: "exitCode"; code: number }
  | { kind: "none" };

/** ExecOutput: the last of its oneof fields wins, as protobuf merging says. */
export function decodeExecOutput(buf: Buffer): ExecOutputMsg {
  const r = new Reader(buf);
  let out: ExecOutputMsg = { kind: "none" };
  while (!r.done) {
    const tag = Number(r.varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 0) out = { kind: "startedPid", pid: Number(BigInt.asUintN(32, r.varint())) };
    else if (field === 2 && wire === 2) out = { kind: "stdout", data: r.bytes() };
    else if (field === 3 && wire === 2) out = { kind: "stderr", data: r.bytes() };
    else if (field === 4 && wire === 0)
      out = { kind: "exitCode", code: Number(BigInt.asIntN(32, r.varint())) };
    else r.skip(wire);
  }
  return out;
}

export interface VersionInfoMsg {
  version: string;
  controller: string;
  leader: string;
  cluster: string;
}

export function decodeVersionInfo(buf: Buffer): VersionInfoMsg {
  const r = new Reader(buf);
  const out: VersionInfoMsg = { version: "", controller: "", leader: "", cluster: "" };
  const keys = [undefined, "version", "controller", "leader", "cluster"] as const;
  while (!r.done) {
    const tag = Number(r.varint());
    const key = keys[tag >>> 3];
    if (key && (tag & 7) === 2) out[key] = r.bytes().toString("utf8");
    else r.skip(tag & 7);
  }
  return out;
}

/** What `env create` prints of the Env it gets back. */
export interface EnvSummary {
  phase: number;
  node: string;
  baseVersion: number;
}

/** Env{status: EnvStatus{phase, node, base_version}}, the rest skipped. */
export function decodeEnvSummary(buf: Buffer): EnvSummary {
  const out: EnvSummary = { phase: 0, node: "", baseVersion: 0 };
  const r = new Reader(buf);
  while (!r.done) {
    const tag = Number(r.varint());
    if (tag >>> 3 !== 2 || (tag & 7) !== 2) {
      r.skip(tag & 7);
      continue;
    }
    const s = new Reader(r.bytes());
    while (!s.done) {
      const t = Number(s.varint());
      const field = t >>> 3;
      if (field === 1 && (t & 7) === 0) out.phase = Number(BigInt.asIntN(32, s.varint()));
      else if (field === 2 && (t & 7) === 2) out.node = s.bytes().toString("utf8");
      else if (field === 7 && (t & 7) === 0) out.baseVersion = Number(BigInt.asUintN(32, s.varint()));
      else s.skip(t & 7);
    }
  }
  return out;
}

/** cli/output/columns.ts envPhase for an EnvPhase number: `Running`, `-` for none or unknown. */
const ENV_PHASES = [
  "-",
  "Pending",
  "Scheduled",
  "Created",
  "Running",
  "Stopped",
  "Failed",
  "Lost",
  "Deleting",
  "Moving",
];
export function envPhaseLabel(phase: number): string {
  return ENV_PHASES[phase] ?? "-";
}
