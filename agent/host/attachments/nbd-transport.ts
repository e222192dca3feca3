/**
 * The NBD client side: turns an nbd(s):// URI into something a loop device
 * (or btrfs directly) can sit on.
 *
 * - kernel: `nbd-client` binds /dev/nbdN where the nbd module exists. The
 *   development machine has no nbd module: the host VM (test/hostvm) tests it.
 * - nbdfuse: libnbd exposes the export as one file in a FUSE mount, with
 *   several connections (-C): ~800 MB/s instead of ~50 MB/s with one.
 *
 * Both run in the foreground, so the process is ours to stop. With `netns`,
 * the client joins that network namespace only (nsenter --net): its FUSE
 * mount stays visible in our mount namespace, which `ip netns exec` would
 * hide.
 */
import { access, mkdir, readdir, readFile, rm, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ResultPromise } from "execa";
import { Code, ProtoctlError, resourceExhausted } from "../../../common/errors.js";
import { run, spawnProcess } from "../../../common/exec.js";
import { findExecutable } from "../../../common/tools.js";
import { netnsPrefix } from "../exports/nbd-server.js";
import { parseNbdUri } from "../exports/nbd-uri.js";
import type { TlsFiles } from "../exports/types.js";
import type { NbdTransportKind } from "./types.js";

const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;

export interface ConnectOptions {
  /** nbd://… or nbds://… (without query). */
  uri: string;
  /** Client certificate directory (tls-dir.ts layout) for nbds:// URIs. */
  tlsDir?: string;
  /** For nbdfuse: the (new, empty) FUSE mountpoint directory. */
  dir: string;
  connections: number;
  /** Expected export size; a different size is refused (wrong or truncated image). */
  sizeBytes: number;
  kind: NbdTransportKind;
  /** For the kernel client (it takes files, not a directory). */
  tls?: TlsFiles;
  netns?: string;
}

/** A live NBD client. */
export interface NbdConnection {
  kind: NbdTransportKind;
  uri: string;
  /** File or block device with the export's bytes. */
  path: string;
  readonly alive: boolean;
  /** Disconnects and removes the mountpoint; idempotent. A busy FUSE file is detached lazily. */
  close(): Promise<void>;
}

/**
 * "kernel" when this host has /dev/nbd0 and nbd-client, else "nbdfuse": the
 * kernel client needs no FUSE round trip per read (tested in the host VM,
 * test/hostvm), and a host with the module but without the client package
 * still attaches through nbdfuse.
 */
export async function detectTransport(): Promise<NbdTransportKind> {
  try {
    await access("/dev/nbd0");
    await access("/sys/block/nbd0");
    if (!(await findExecutable("nbd-client"))) return "nbdfuse";
    return "kernel";
  } catch {
    return "nbdfuse";
  }
}

export async function connectNbd(o: ConnectOptions): Promise<NbdConnection> {
  return o.kind === "kernel" ? connectKernel(o) : connectFuse(o);
}

function spawnClient(cmd: string, args: string[], netns: string | undefined): ResultPromise {
  const [c, ...pre] = [...netnsPrefix(netns), cmd];
  return spawnProcess(c!, [...pre, ...args], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    buffer: false,
    reject: false,
  });
}

function sourceUnavailable(uri: string, detail: string): ProtoctlError {
  return new ProtoctlError(Code.UNAVAILABLE, `cannot read the seed from ${uri}: ${detail}`, {
    reason: "SOURCE_UNAVAILABLE",
    subject: uri,
    hint: "attach from another node holding the image",
    output: detail,
  });
}

/**
 * nbdfuse refuses `tls-certificates=` in a URI ("local file access is not
 * allowed") and, run as root, only reads /etc/pki/libnbd, shared by every
 * agent on the host. For nbds:// a local nbdkit proxy (nbd plugin, one TLS
 * upstream connection per client connection) listens on a unix socket next
 * to the mountpoint and nbdfuse connects to that; the proxy is the process
 * that joins the network namespace.
 *
 * `shared=true`: the proxy makes ONE upstream TLS connection and multiplexes
 * nbdfuse's connections over it. Each TLS handshake costs ~110 ms here, and
 * nbdfuse opens its connections one after another, so four of them made the
 * attach (time-to-usable) ~460 ms instead of ~100 ms; lazy reads lose little
 * (256 MiB sequential: 2.5 s shared, 1.9 s unshared) and the bulk copy
 * (nbdcopy, hydrate.ts) connects on its own, not through this proxy.
 *
 * The proxy outlives the agent, as nbdfuse does: envs on an attached
 * version keep reading while the agent restarts, and the next agent process
 * finds it by its pid file (stopProxy). So it runs as a daemon: nbdkit in
 * the foreground ties itself to its parent (it sets PR_SET_PDEATHSIG even
 * without --exit-with-parent, seen with 1.32), and lazy reads failed with
 * EIO from the moment the agent died.
 */
async function startTlsProxy(o: ConnectOptions): Promise<{ uri: string; stop(): Promise<void> }> {
  const sock = `${o.dir}.sock`;
  const [c, ...pre] = [...netnsPrefix(o.netns), "nbdkit"];
  // Exits once the daemon it forks listens; start-up errors (bad TLS files…) are on its stderr.
  const started = await run(
    c!,
    [
      ...pre,
      "--readonly",
      "--pidfile",
      `${o.dir}.pid`,
      "--unix",
      sock,
      "nbd",
      `uri=${o.uri}`,
      "tls=require",
      `tls-certificates=${o.tlsDir}`,
      "shared=true",
    ],
    { allowFailure: true, timeoutMs: READY_TIMEOUT_MS },
  );
  const stop = () => stopProxy(o.dir);
  if (started.exitCode !== 0) {
    await stop();
    throw sourceUnavailable(o.uri, started.stderr.trim() || "the TLS proxy did not start");
  }
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await proxyPid(o.dir))) {
    if (Date.now() > deadline) {
      await stop();
      throw sourceUnavailable(o.uri, "the TLS proxy did not start");
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { uri: `nbd+unix:///?socket=${sock}`, stop };
}

/** The pid of the TLS proxy of the NBD client in `dir` while it runs (its pid file names it). */
async function proxyPid(dir: string): Promise<number | undefined> {
  const pid = Number((await readFile(`${dir}.pid`, "utf8").catch(() => "")).trim());
  if (!(pid > 0)) return undefined;
  const args = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
  return args.includes(`${dir}.sock`) ? pid : undefined;
}

/**
 * Stops the TLS proxy of the NBD client in `dir`, this process's or one a
 * previous agent process started (a pid that no longer runs that proxy is
 * left alone), and removes its socket and pid file. Nothing to do without TLS.
 */
export async function stopProxy(dir: string): Promise<void> {
  const pid = await proxyPid(dir);
  const signal = (sig: NodeJS.Signals) => {
    try {
      if (pid) process.kill(pid, sig);
    } catch {
      // gone meanwhile
    }
  };
  if (pid) {
    signal("SIGTERM");
    const deadline = Date.now() + STOP_GRACE_MS;
    while ((await proxyPid(dir)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (await proxyPid(dir)) signal("SIGKILL");
  }
  await rm(`${dir}.sock`, { force: true });
  await rm(`${dir}.pid`, { force: true });
}

async function connectFuse(o: ConnectOptions): Promise<NbdConnection> {
  await mkdir(o.dir, { recursive: true });
  const file = join(o.dir, "image");
  const proxy = o.uri.startsWith("nbds://") ? await startTlsProxy(o) : undefined;
  // Through the proxy the network is its business: nbdfuse reaches the socket by path.
  const child = proxy
    ? spawnClient("nbdfuse", ["-r", "-C", String(o.connections), file, proxy.uri], undefined)
    : spawnClient("nbdfuse", ["-r", "-C", String(o.connections), file, o.uri], o.netns);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4096);
  });
  let exited = false;
  const exitedP = child.then(() => {
    exited = true;
  });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await unmountFuse(o.dir);
      if (!exited) {
        const t1 = setTimeout(() => child.kill("SIGTERM"), 1000);
        const t2 = setTimeout(() => child.kill("SIGKILL"), 1000 + STOP_GRACE_MS);
        await exitedP;
        clearTimeout(t1);
        clearTimeout(t2);
      }
      await proxy?.stop();
      await rmdir(o.dir).catch(() => undefined);
    })();
    return closing;
  };
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      await close();
      // Through the proxy, the proxy's log says why (TLS refused, connection refused…).
      throw sourceUnavailable(o.uri, stderr.trim() || "nbdfuse exited");
    }
    const st = await stat(file).catch(() => undefined);
    if (st?.isFile()) {
      if (st.size !== o.sizeBytes) {
        await close();
        throw new ProtoctlError(
          Code.FAILED_PRECONDITION,
          `${o.uri} exports ${st.size} bytes, the seed has ${o.sizeBytes}`,
          { reason: "SEED_SIZE_MISMATCH", subject: o.uri },
        );
      }
      break;
    }
    if (Date.now() > deadline) {
      await close();
      throw sourceUnavailable(o.uri, `nbdfuse not ready after ${READY_TIMEOUT_MS} ms`);
    }
    // A stat is cheap next to the attach's wait for this file (40-60 ms): look often.
    await new Promise((r) => setTimeout(r, 2));
  }
  return {
    kind: "nbdfuse",
    uri: o.uri,
    path: file,
    get alive() {
      return !exited;
    },
    close,
  };
}

/** Unmounts an nbdfuse dir; fusermount fails while the file is open (a loop device on it): lazily then. */
export async function unmountFuse(dir: string): Promise<void> {
  const r = await run("fusermount3", ["-u", dir], { allowFailure: true });
  if (r.exitCode !== 0 && (await isMountpoint(dir))) {
    await run("fusermount3", ["-u", "-z", dir], { allowFailure: true });
  }
}

/** True when `dir` is a mountpoint in our mount namespace. */
export async function isMountpoint(dir: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((l) => l.split(" ")[4] === dir);
}

/** First /dev/nbdN without a connected client. */
async function freeNbdDevice(): Promise<string> {
  const names = (await readdir("/sys/block")).filter((n) => /^nbd\d+$/.test(n));
  names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  for (const n of names) {
    const pid = await readFile(`/sys/block/${n}/pid`, "utf8").catch(() => "");
    if (!pid.trim()) return `/dev/${n}`;
  }
  throw resourceExhausted("no free /dev/nbd device", {
    reason: "NO_NBD_DEVICE",
    hint: "modprobe nbd nbds_max=64",
  });
}

/** Kernel client (no nbd module on the development machine: tested in the host VM, test/hostvm). */
async function connectKernel(o: ConnectOptions): Promise<NbdConnection> {
  const u = parseNbdUri(o.uri);
  const dev = await freeNbdDevice();
  const args = [
    u.host,
    String(u.port),
    dev,
    "-N",
    u.exportName,
    "-readonly",
    "-connections",
    String(o.connections),
  ];
  if (u.tls && o.tls) {
    args.push(
      "-certfile",
      o.tls.certFile,
      "-keyfile",
      o.tls.keyFile,
      "-cacertfile",
      o.tls.caFile,
      "-tlshostname",
      u.host,
    );
  }
  const [c, ...pre] = [...netnsPrefix(o.netns), "nbd-client"];
  try {
    await run(c!, [...pre, ...args], { timeoutMs: READY_TIMEOUT_MS });
  } catch (err) {
    throw sourceUnavailable(o.uri, String((err as Error).message));
  }
  const size = Number((await readFile(`/sys/block/${dev.slice(5)}/size`, "utf8")).trim()) * 512;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await run("nbd-client", ["-d", dev], { allowFailure: true });
  };
  if (size !== o.sizeBytes) {
    await close();
    throw new ProtoctlError(
      Code.FAILED_PRECONDITION,
      `${o.uri} exports ${size} bytes, the seed has ${o.sizeBytes}`,
      {
        reason: "SEED_SIZE_MISMATCH",
        subject: o.uri,
      },
    );
  }
  return {
    kind: "kernel",
    uri: o.uri,
    path: dev,
    get alive() {
      return !closed;
    },
    close,
  };
}
