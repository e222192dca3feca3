/**
 * `protoctl env cp SRC DEST`: one side is `ENV:/path`, the other a local
 * path (write `./a:b` for a local name with a colon). Files stream over the
 * controller connection (CopyToEnv / CopyFromEnv); the agent resolves the
 * env side inside the env root. What comes out of an env is written locally
 * with the same care (tree-copy.ts): no entry may climb out of the
 * destination, no existing link is written through. Owners are kept when
 * this process runs as root; otherwise files become the caller's.
 */
import { resolve } from "node:path";
import { invalidArgument } from "../../common/errors.js";
import { applyCopyStream, measureTree, readTree, TreeWriter } from "../../common/tree-copy.js";
import type { CopyChunk, CopyResult } from "../../proto/gen/protoctl/v1/types.js";
import type { Api } from "../client/connect.js";
import { type ProgressSink, useTty, withProgress } from "../output/progress.js";

/** Copies below this many bytes show no progress bar. */
const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;

export interface CopySide {
  env?: string;
  path: string;
}

/** `web:/srv/x` → { env: "web", path: "/srv/x" }; anything else is local. */
export function parseCopySide(raw: string): CopySide {
  const m = /^([a-z0-9][a-z0-9-]{0,62}):(.*)$/.exec(raw);
  if (!m) return { path: raw };
  if (!m[2])
    throw invalidArgument(`${raw}: give a path after the colon`, {
      reason: "INVALID_PATH",
      hint: "e.g. web:/srv",
    });
  return { env: m[1]!, path: m[2] };
}

export async function envCopy(api: Api, rawSrc: string, rawDest: string): Promise<CopyResult> {
  const src = parseCopySide(rawSrc);
  const dest = parseCopySide(rawDest);
  if (!!src.env === !!dest.env) {
    throw invalidArgument("one side of env cp is ENV:/path and the other a local path", {
      reason: "INVALID_COPY",
      hint: "e.g. `protoctl env cp ./dir web:/srv` or `protoctl env cp web:/var/log/app.log .`",
    });
  }
  return src.env
    ? copyOut(api, src.env, src.path, resolve(dest.path))
    : copyIn(api, resolve(src.path), dest.env!, dest.path);
}

async function copyIn(api: Api, local: string, env: string, path: string): Promise<CopyResult> {
  const totals = await measureTree("/", local);
  return showing(`Copying to ${env}:${path}`, totals.bytes, async (tick) => {
    const { client, options } = await api.clientStream();
    let reply!: Promise<CopyResult>;
    const call = await new Promise<ReturnType<typeof client.copyToEnv>>((ok) => {
      reply = new Promise<CopyResult>((res, rej) => {
        ok(client.copyToEnv(options, (err, r) => (err ? rej(api.explain(err)) : res(r))));
      });
    });
    // The server may refuse (bad path, unknown env) while we still send: stop sending then and
    // answer with its error; it must not be an unhandled rejection (that crashes the CLI with a
    // stack), nor may a write wait for "drain" on a finished call.
    let finished = false;
    const finish = () => {
      finished = true;
    };
    const settled = reply.then(finish, finish);
    const write = async (c: CopyChunk) => {
      if (call.write(c)) return;
      await new Promise<void>((r) => {
        const go = () => {
          call.off("drain", go);
          r();
        };
        call.once("drain", go);
        void settled.then(go);
      });
    };
    try {
      await write({
        part: {
          $case: "header",
          header: { env, path, totalBytes: totals.bytes, totalEntries: totals.entries },
        },
      });
      for await (const p of readTree("/", local)) {
        if (finished) break;
        await write({ part: p });
        if (p.$case === "data") tick(p.data.length);
      }
      call.end();
    } catch (err) {
      call.cancel();
      await reply.catch(() => undefined);
      throw err;
    }
    return reply;
  });
}

async function copyOut(api: Api, env: string, path: string, local: string): Promise<CopyResult> {
  const stream = api.stream<CopyChunk>((c, o) => c.copyFromEnv({ env, path }, o));
  const first = await stream.next();
  const head = first.done ? undefined : first.value.part;
  const total = head?.$case === "header" ? head.header.totalBytes : 0;
  return showing(`Copying ${env}:${path}`, total, async (tick) => {
    async function* chunks(): AsyncGenerator<CopyChunk> {
      if (!first.done) yield first.value;
      for await (const c of stream) {
        if (c.part?.$case === "data") tick(c.part.data.length);
        yield c;
      }
    }
    const asRoot = process.getuid?.() === 0;
    return applyCopyStream(chunks(), () => new TreeWriter("/", local, asRoot));
  });
}

/** Runs a copy with a progress bar on a terminal when it is big enough to need one. */
async function showing(
  title: string,
  totalBytes: number,
  work: (tick: (n: number) => void) => Promise<CopyResult>,
): Promise<CopyResult> {
  if (!useTty() || totalBytes < PROGRESS_MIN_BYTES) return work(() => undefined);
  return withProgress(title, async (sink: ProgressSink) => {
    let done = 0;
    let shown = 0;
    const value = await work((n) => {
      done += n;
      if (done - shown < totalBytes / 100 && done < totalBytes) return;
      shown = done;
      sink.progress({
        step: title,
        fraction: Math.min(1, done / totalBytes),
        message: `${mib(done)} of ${mib(totalBytes)}`,
        node: "",
        bytesDone: done,
        bytesTotal: totalBytes,
      });
    });
    return { value, done: `${title}: ${mib(value.bytes)} in ${value.entries} entries` };
  });
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}
