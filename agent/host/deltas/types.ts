/**
 * Contracts of the delta transport: `btrfs send [-p parent]` as a byte
 * stream and `btrfs receive` from one, so the gRPC layer (SendDelta /
 * ReceiveDelta in proto/protoctl/v1/agent.proto) can pipe a version from one
 * agent to another. Where a node already has @N-1 this moves only the
 * difference; seed images (../exports) are the other transport.
 */
import type { Readable } from "node:stream";

export interface SendOptions {
  /** Read-only subvolume to send (base@N). */
  subvolume: string;
  /** Read-only parent the receiver already holds (base@N-1); omit for a full stream. */
  parent?: string;
  signal?: AbortSignal;
}

/** A send in progress: consume `stream`; `done` settles when btrfs send exits. */
export interface SendStream {
  stream: Readable;
  /** Resolves after a clean exit; rejects with a ProtoctlError otherwise. */
  done: Promise<void>;
  /** Stops the sender (the stream ends with an error). */
  cancel(): void;
}

export interface ReceiveOptions {
  /** Directory (inside a btrfs filesystem) to receive into. */
  dir: string;
  /** The send stream. */
  stream: Readable;
  signal?: AbortSignal;
}

export interface Received {
  /** Absolute path of the received (read-only) subvolume. */
  path: string;
  name: string;
  /** "full" for a stream without parent, "incremental" for send -p. */
  kind: "full" | "incremental";
  durationMs: number;
}

export interface DeltaDriver {
  send(opts: SendOptions): SendStream;
  receive(opts: ReceiveOptions): Promise<Received>;
}
