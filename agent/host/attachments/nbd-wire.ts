/**
 * NBD's wire constants (doc/proto.md of the NBD project), the client's options
 * and what it reports: shared by the handshake (nbd-handshake.ts) and the
 * transmission phase (nbd-client.ts).
 */
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPT_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;

export const OPT_STARTTLS = 5;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_SET_META_CONTEXT = 10;

export const REP_ACK = 1;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
export const REP_FLAG_ERROR = 0x80000000;
export const INFO_EXPORT = 0;

export const CMD_READ = 0;
export const CMD_DISC = 2;
export const CMD_BLOCK_STATUS = 7;

export const REPLY_FLAG_DONE = 1;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR_BIT = 0x8000;

/** base:allocation status bits. */
export const STATE_HOLE = 1;
export const STATE_ZERO = 2;

export interface NbdClientOptions {
  host: string;
  port: number;
  exportName: string;
  /** PEM contents: with them the connection upgrades to TLS and presents the client certificate. */
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
  /** Gives up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
}

export interface Extent {
  length: number;
  /** STATE_HOLE | STATE_ZERO bits. */
  flags: number;
}

/** A refusal or failure the server reported, or a broken protocol exchange. */
export class NbdError extends Error {
  constructor(
    message: string,
    readonly errno = 0,
  ) {
    super(message);
    this.name = "NbdError";
  }
}
