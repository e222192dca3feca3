/**
 * The few protobuf messages the fast entry sends and reads, encoded by hand:
 * ExecInput (start without options, stdin_eof, signal), ExecOutput and
 * VersionInfo. The generated code (proto/gen) would pull @bufbuild/protobuf
 * and every message of types.proto into the start-up; wire.test.ts checks
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
