/**
 * `btrfs send` to a Node Readable and `btrfs receive` from one. The stream
 * never touches a file: the gRPC layer pipes it chunk by chunk from one agent
 * to the other, and publish (../exports/seed-image.ts) pipes a full send into
 * a fresh image.
 *
 * A failed receive leaves a half-written, writable subvolume behind; it is
 * deleted here so a retry finds the name free.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { Code, ProtoctlError } from "../../../common/errors.js";
import { CommandError, run, spawnProcess } from "../../../common/exec.js";
import type { DeltaDriver, Received, ReceiveOptions, SendOptions, SendStream } from "./types.js";

/** Parses "At subvol NAME" / "At snapshot NAME" from btrfs receive's output. */
export function parseReceivedName(
  output: string,
): { name: string; kind: "full" | "incremental" } | undefined {
  const m = /^At (subvol|snapshot) (.+)$/m.exec(output);
  if (!m) return undefined;
  return { name: m[2]!.trim(), kind: m[1] === "snapshot" ? "incremental" : "full" };
}

/** `btrfs send [-p parent] subvolume` as a stream. */
export function sendSubvolume(opts: SendOptions): SendStream {
  const args = ["send", "-q", ...(opts.parent ? ["-p", opts.parent] : []), opts.subvolume];
  const child = spawnProcess("btrfs", args, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    buffer: { stdout: false, stderr: true },
    cancelSignal: opts.signal,
    reject: false,
  });
  const done = (async () => {
    const res = await child;
    if (res.failed) {
      const err = new CommandError(
        "btrfs",
        args,
        res.exitCode,
        String(res.stderr ?? ""),
        "",
        res.signal ?? undefined,
        false,
        res.cause ?? undefined,
      );
      throw sendError(err, opts);
    }
  })();
  // The caller may only read the stream; an unobserved failure must not crash the process.
  done.catch(() => undefined);
  return { stream: child.stdout!, done, cancel: () => child.kill("SIGTERM") };
}

/** A failed `btrfs send` as the error users get (NOT_READ_ONLY names the fix). */
export function sendError(err: CommandError, opts: Pick<SendOptions, "subvolume">): ProtoctlError {
  if (/not read-only|read-only/i.test(err.stderr) && !/ERROR: .*No such file/.test(err.stderr)) {
    return new ProtoctlError(
      Code.FAILED_PRECONDITION,
      `btrfs send needs read-only subvolumes: ${err.message}`,
      {
        reason: "NOT_READ_ONLY",
        subject: opts.subvolume,
        output: err.stderr,
        cause: err,
      },
    );
  }
  return err.toProtoctl(`btrfs send of ${opts.subvolume} failed`, opts.subvolume);
}

/** `btrfs receive dir` fed from `opts.stream`; deletes a half-received subvolume on failure. */
export async function receiveSubvolume(opts: ReceiveOptions): Promise<Received> {
  const started = performance.now();
  const args = ["receive", opts.dir];
  const child = spawnProcess("btrfs", args, {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    all: true,
    cancelSignal: opts.signal,
    reject: false,
  });
  // Feed stdin. Only an error of the source stops the receiver; a write error (EPIPE) just
  // means btrfs receive gave up, and its own exit status says why.
  let sourceError: unknown;
  let settled = false;
  opts.stream.once("error", (err) => {
    if (settled) return;
    sourceError = err;
    child.kill("SIGTERM");
  });
  child.stdin!.on("error", () => undefined);
  opts.stream.pipe(child.stdin!);
  const res = await child;
  settled = true;
  opts.stream.unpipe(child.stdin!);
  // A receiver that gave up leaves the sender blocked on a full pipe: release it.
  if (res.failed && !opts.stream.readableEnded) opts.stream.destroy();
  const out = String(res.all ?? "");
  const parsed = parseReceivedName(out);
  if (res.failed || sourceError !== undefined) {
    if (parsed) await deleteHalfReceived(join(opts.dir, parsed.name));
    if (sourceError !== undefined) {
      const src = ProtoctlError.from(sourceError);
      throw new ProtoctlError(
        src.code === Code.INTERNAL ? Code.ABORTED : src.code,
        `receive into ${opts.dir} aborted, the send stream failed: ${src.message}`,
        { reason: "STREAM_FAILED", subject: opts.dir, output: out, cause: sourceError },
      );
    }
    if (/cannot find parent subvolume/i.test(out)) {
      throw new ProtoctlError(
        Code.FAILED_PRECONDITION,
        `the target has no parent for this delta in ${opts.dir}`,
        {
          reason: "PARENT_MISSING",
          subject: opts.dir,
          output: out,
          hint: "send the full version instead (no parent), or the seed image",
        },
      );
    }
    const err = new CommandError(
      "btrfs",
      args,
      res.exitCode,
      String(res.stderr ?? ""),
      String(res.stdout ?? ""),
      res.signal ?? undefined,
      false,
      res.cause ?? undefined,
    );
    throw err.toProtoctl(`btrfs receive into ${opts.dir} failed`, opts.dir);
  }
  if (!parsed) {
    throw new ProtoctlError(
      Code.INTERNAL,
      `btrfs receive did not name the received subvolume: ${out.slice(0, 200)}`,
      {
        reason: "RECEIVE_UNPARSED",
        output: out,
      },
    );
  }
  return {
    path: join(opts.dir, parsed.name),
    name: parsed.name,
    kind: parsed.kind,
    durationMs: performance.now() - started,
  };
}

/** Deletes what a failed receive left at `path` (nothing if it is not there). */
export async function deleteHalfReceived(path: string): Promise<void> {
  try {
    await access(path);
  } catch {
    return;
  }
  await run("btrfs", ["subvolume", "delete", path], { allowFailure: true });
}

/** The real DeltaDriver over btrfs-progs. */
export const btrfsDeltas: DeltaDriver = {
  send: sendSubvolume,
  receive: receiveSubvolume,
};
