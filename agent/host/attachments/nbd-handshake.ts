/**
 * The NBD client's handshake: dialing (with placed reads on a plain socket),
 * byte-exact reads of the option exchange, STARTTLS, and placed reads on the
 * TLS socket that wraps the plain one (readInto).
 */
import { connect as netConnect, type Socket } from "node:net";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import {
  IHAVEOPT,
  type NbdClientOptions,
  NbdError,
  OPT_REPLY_MAGIC,
  REP_ACK,
  REP_FLAG_ERROR,
} from "./nbd-wire.js";

/** Byte-exact reads from a stream during the handshake. */
export class HandshakeReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter?: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void };
  private failure?: Error;
  private readonly onData = (b: Buffer) => {
    this.chunks.push(b);
    this.have += b.length;
    this.pump();
  };
  private readonly onEnd = () =>
    this.fail(new NbdError("the server closed the connection during the handshake"));
  private readonly onError = (e: Error) => this.fail(e);

  constructor(
    private readonly stream: Socket,
    private readonly feed?: Feed,
  ) {
    // The feed's buffer is read into again: keep a copy.
    if (feed) feed.sink = (b, n) => this.onData(Buffer.from(b.subarray(0, n)));
    else stream.on("data", this.onData);
    stream.on("end", this.onEnd);
    stream.on("close", this.onEnd);
    stream.on("error", this.onError);
  }

  read(n: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.pump();
    });
  }

  /** Stops listening; bytes already buffered must not exist (the protocol is lock-step here). */
  detach(): void {
    if (this.feed) this.feed.sink = undefined;
    else this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.off("close", this.onEnd);
    this.stream.off("error", this.onError);
    if (this.have) throw new NbdError("unexpected bytes from the server before TLS");
  }

  private fail(e: Error): void {
    this.failure ??= e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }

  private pump(): void {
    const w = this.waiter;
    if (!w || this.have < w.n) return;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, w.n);
    const rest = all.subarray(w.n);
    this.chunks = rest.length ? [rest] : [];
    this.have = rest.length;
    this.waiter = undefined;
    w.resolve(out);
  }
}

export const SCRATCH_BYTES = 64 * 1024;

/**
 * A plain socket's reads (`onread`): `next` names the buffer the next read
 * fills (asked after every read), `sink` gets each read's bytes, in that
 * buffer, which may be read into again: consume them at once.
 */
export interface Feed {
  next?: () => Uint8Array;
  sink?: (b: Uint8Array, n: number) => void;
}

export function dial(host: string, port: number, feed?: Feed): Promise<Socket> {
  const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  return new Promise((resolve, reject) => {
    const s = netConnect({
      host,
      port,
      noDelay: true,
      ...(feed
        ? {
            onread: {
              buffer: () => feed.next?.() ?? scratch,
              callback: (n: number, buf: Uint8Array) => {
                feed.sink?.(buf, n);
                return true;
              },
            },
          }
        : {}),
    });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/**
 * Gives a TLS socket placed reads, as `onread` gives a plain one: tls.connect
 * ignores `onread` when it wraps an existing socket, and NBD's STARTTLS has
 * to wrap the plain one. This sets what net.Socket's constructor sets for
 * `onread` with a buffer function (Node 15 and later: the socket's own
 * symbols kBuffer, kBufferCb and kBufferGen, and its handle's useUserBuffer;
 * TLSWrap then decrypts into that buffer). False, and nothing changed, where
 * those are not there: the caller keeps 'data' events.
 */
export function readInto(
  sock: Socket,
  next: () => Uint8Array,
  sink: (b: Uint8Array, n: number) => void,
): boolean {
  const sym = (name: string) => Object.getOwnPropertySymbols(sock).find((x) => x.description === name);
  const [kBuffer, kBufferCb, kBufferGen] = [sym("kBuffer"), sym("kBufferCb"), sym("kBufferGen")];
  const handle = (sock as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (!kBuffer || !kBufferCb || !kBufferGen || typeof handle?.useUserBuffer !== "function") return false;
  const fields = sock as unknown as Record<symbol, unknown>;
  if (fields[kBuffer] !== null || fields[kBufferGen] !== null) return false;
  const first = next();
  fields[kBufferGen] = next;
  fields[kBufferCb] = (n: number, b: Uint8Array) => {
    sink(b, n);
    return true;
  };
  fields[kBuffer] = first;
  handle.useUserBuffer(first);
  return true;
}

export function upgrade(raw: Socket, o: NbdClientOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tlsConnect({
      socket: raw,
      host: o.host,
      ca: o.tls!.ca,
      cert: o.tls!.cert,
      key: o.tls!.key,
      // SNI takes host names only; the certificate is still checked against o.host.
      servername: /^[\d.]+$|:/.test(o.host) ? undefined : o.host,
    });
    t.once("secureConnect", () => {
      t.off("error", reject);
      resolve(t);
    });
    t.once("error", reject);
  });
}

export function sendOption(sock: Socket, opt: number, data: Buffer): void {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(data.length, 12);
  sock.write(data.length ? Buffer.concat([h, data]) : h);
}

interface OptionReply {
  type: number;
  data: Buffer;
}

/** Reads replies to `opt` until ACK or an error reply. */
export async function optionReplies(
  rd: HandshakeReader,
  opt: number,
): Promise<{ ok: boolean; replies: OptionReply[]; error?: string }> {
  const replies: OptionReply[] = [];
  for (;;) {
    const h = await rd.read(20);
    if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new NbdError("bad option reply magic");
    if (h.readUInt32BE(8) !== opt) throw new NbdError("option reply for another option");
    const type = h.readUInt32BE(12);
    const len = h.readUInt32BE(16);
    if (len > 1 << 16) throw new NbdError("option reply too large");
    const data = len ? await rd.read(len) : Buffer.alloc(0);
    if (type === REP_ACK) return { ok: true, replies };
    if (type & REP_FLAG_ERROR) {
      return { ok: false, replies, error: data.toString() || `reply 0x${type.toString(16)}` };
    }
    replies.push({ type, data });
  }
}

export async function expectAck(rd: HandshakeReader, opt: number): Promise<void> {
  const r = await optionReplies(rd, opt);
  if (!r.ok) throw new NbdError(`the server refused option ${opt}: ${r.error}`);
}
