/**
 * Contracts of the origin side of base propagation (DESIGN.md, "Propagation:
 * seed + NBD, lazy then local"): a read-only `base@N` subvolume becomes a
 * sealed seed image, and the image is served read-only over NBD.
 *
 * Drivers take plain paths and parameters (a subvolume path, an image path,
 * a bind address), not the pool object, so the pool and the agent service
 * can wire them in without either knowing the other's internals.
 */

/** A sealed, immutable btrfs seed image holding exactly one base version. */
export interface SeedImage {
  /** Absolute path of the image file (mode 0444 once sealed). */
  path: string;
  /** Size of the image in bytes (what NBD exports and hydration copies). */
  sizeBytes: number;
  /** "ALGO:HEX" of every byte of the image (checksum.ts). */
  checksum: string;
  /** Name of the subvolume inside the image (the basename of the source). */
  subvolume: string;
  /** btrfs filesystem UUID of the image (shared by every sprout made from it). */
  fsid: string;
}

/** Cluster TLS material, as paths (common/tls.ts of the controller provides the files). */
export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface ServeOptions {
  /** The image to serve; it is never written. */
  image: string;
  /** NBD export name clients must ask for. */
  exportName: string;
  /** Address to bind (the agent's cluster address). Never a wildcard by default. */
  bindAddress: string;
  /** TCP port; 0 picks a free one. */
  port?: number;
  /** Connections allowed at once (nbdkit limit=, qemu-nbd --shared); nbdcopy --connections=4 uses 4. */
  maxConnections?: number;
  /**
   * With TLS, the client identities allowed (certificate subject DNs like
   * "CN=node-2"; served by qemu-nbd then); empty = any certificate signed by
   * the cluster CA. Without TLS an allow-list cannot be enforced by the
   * server and is rejected.
   */
  allow?: string[];
  tls?: TlsFiles;
  /** Directory for the server's private files (TLS links, pid file). */
  stateDir: string;
  /** Run the server inside this network namespace (/run/netns/NAME); tests use it. */
  netns?: string;
  /** Kill the server when the calling process dies (setpriv --pdeathsig). */
  dieWithParent?: boolean;
}

/** A running export. */
export interface NbdExport {
  /** nbd://host:port/name, or nbds://…?tls-certificates=DIR for clients of this host. */
  uri: string;
  bindAddress: string;
  port: number;
  exportName: string;
  image: string;
  pid: number;
  tls: boolean;
  /** True until the server process exits. */
  readonly running: boolean;
  /** Resolves when the server process exits (for any reason). */
  readonly exited: Promise<void>;
  /** Stops the server (SIGTERM, then SIGKILL); idempotent. */
  stop(): Promise<void>;
}

/** Origin side of propagation. */
export interface ExportDriver {
  /** Builds the sealed seed image of a read-only subvolume at `imagePath`. */
  publish(subvolume: string, imagePath: string, opts?: PublishOptions): Promise<SeedImage>;
  serve(opts: ServeOptions): Promise<NbdExport>;
}

export interface PublishOptions {
  /** Scratch directory for the temporary mountpoint (defaults to the image's directory). */
  workDir?: string;
  signal?: AbortSignal;
  progress?: (p: { step: string; fraction?: number }) => void;
}
