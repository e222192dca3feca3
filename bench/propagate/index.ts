/**
 * Base propagation on one host, origin and target on loopback (driver level:
 * exports/, attachments/, deltas/ without agents or controller).
 *
 * For a small and a large base (default 256 MiB and 2 GiB of random data plus
 * a busybox rootfs):
 *  - time-to-usable: attach (nbdfuse + ro loop + sprout + rw mount) until the
 *    first file read in the base subvolume returns, median of --runs;
 *    target: ratio large/small ≤ 1.2 (independent of size);
 *  - hydration (the agent's piece copy with its checksum + LOOP_CHANGE_FD +
 *    drop NBD) versus raw `nbdcopy --connections=4` of the same export to a
 *    local file, measured alternately in the same run, medians; target ≤ 1.3x.
 *    Each export gets one warm-up round first (attach, hydrate, detach, raw
 *    copy), reported as `first_*` and left out of the medians: a fresh
 *    process's copy workers run their first copy ~90 ms slower while V8
 *    compiles their hot paths, which an agent pays once per worker, not per
 *    hydration.
 * Both on a TLS export (certificates of one CA, as agents of a cluster that
 * joined with TLS serve: the figures the targets are judged on) and, under
 * "plain", on the same image served without TLS.
 * Plus a `btrfs send -p` delta (8 MiB changed) piped into a pool holding the
 * parent.
 *
 * Fan-out and fleet time-to-usable go through the controller: `npm run bench -- propagate-fleet` (fleet.ts).
 *
 * Usage: npm run bench -- propagate [--runs N (default 5)] [--small MiB] [--large MiB]
 * Last stdout line: {"bench":"propagate", ...}
 */
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SeedAttachments } from "../../agent/host/attachments/seed-attachments.js";
import type { AttachOptions } from "../../agent/host/attachments/types.js";
import { receiveSubvolume, sendSubvolume } from "../../agent/host/deltas/btrfs-stream.js";
import { serveImage } from "../../agent/host/exports/nbd-server.js";
import { withClientTls } from "../../agent/host/exports/nbd-uri.js";
import { publishSeedImage } from "../../agent/host/exports/seed-image.js";
import {
  makeBaseSubvolume,
  makeTestCa,
  makeTmpfsDir,
  writeRandomFile,
} from "../../agent/host/exports/test-support.js";
import { makeTlsDir } from "../../agent/host/exports/tls-dir.js";
import { run } from "../../common/exec.js";
import { makeTestPool } from "../../test/fixtures/pool.js";

const MiB = 1024 * 1024;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const r1 = (n: number) => Math.round(n * 10) / 10;

interface ExportResult {
  /** The warm-up round (not in the medians). */
  first_usable_ms: number;
  first_hydrate_ms: number;
  first_raw_ms: number;
  usable_ms: number;
  usable_runs_ms: number[];
  /** Medians of the attach's steps: NBD client up, loop devices, host lock wait, mount + sprout + rw. */
  attach_steps_ms: Record<string, number>;
  hydrate_ms: number;
  hydrate_runs_ms: number[];
  hydrate_copy_ms: number;
  hydrate_verify_ms: number;
  hydrate_switch_ms: number;
  raw_nbdcopy_ms: number;
  raw_runs_ms: number[];
  hydrate_mb_s: number;
  raw_mb_s: number;
  hydrate_vs_raw: number;
}

interface SizeResult extends ExportResult {
  base_mib: number;
  image_bytes: number;
  publish_ms: number;
  /** The same measurements on a plain (no TLS) export. */
  plain: ExportResult;
}

/** Attach, read, hydrate, detach against one export, alternating with a raw nbdcopy of it. */
async function measureExport(
  att: SeedAttachments,
  opts: AttachOptions,
  rawUri: string,
  statePath: string,
  sizeBytes: number,
  runs: number,
): Promise<ExportResult> {
  const usable: number[] = [];
  const steps: Record<string, number[]> = {};
  const hydrate: number[] = [];
  const copy: number[] = [];
  const verify: number[] = [];
  const swap: number[] = [];
  const raw: number[] = [];
  // Round 0 warms up (its figures are reported apart); rounds 1..runs are measured.
  for (let i = 0; i <= runs; i++) {
    // Raw reference first on odd runs, second on even ones: neither always gets the warm cache.
    const rawRun = async () => {
      const dest = join(statePath, "raw.img");
      const t = performance.now();
      await run("nbdcopy", ["--connections=4", rawUri, dest]);
      raw.push(performance.now() - t);
      await rm(dest);
    };
    if (i % 2 === 1) await rawRun();
    const t0 = performance.now();
    const a = await att.attach(opts);
    await run("cat", [join(a.subvolumePath, "etc/motd")]);
    usable.push(performance.now() - t0);
    for (const [k, v] of Object.entries(a.attachTiming ?? {})) {
      steps[k] = [...(steps[k] ?? []), v];
    }
    const h0 = performance.now();
    const h = await att.hydrate(opts.key);
    hydrate.push(performance.now() - h0);
    copy.push(h.hydration!.copyMs);
    verify.push(h.hydration!.verifyMs);
    swap.push(h.hydration!.switchMs);
    await att.detach(opts.key);
    if (i % 2 === 0) await rawRun();
  }
  const [firstUsable] = usable.splice(0, 1);
  const [firstHydrate] = hydrate.splice(0, 1);
  const [firstRaw] = raw.splice(0, 1);
  for (const xs of [copy, verify, swap, ...Object.values(steps)]) xs.splice(0, 1);
  const hMs = median(hydrate);
  const rawMs = median(raw);
  return {
    first_usable_ms: r1(firstUsable!),
    first_hydrate_ms: r1(firstHydrate!),
    first_raw_ms: r1(firstRaw!),
    usable_ms: r1(median(usable)),
    usable_runs_ms: usable.map(r1),
    attach_steps_ms: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, r1(median(v))])),
    hydrate_ms: r1(hMs),
    hydrate_runs_ms: hydrate.map(r1),
    hydrate_copy_ms: r1(median(copy)),
    hydrate_verify_ms: r1(median(verify)),
    hydrate_switch_ms: r1(median(swap)),
    raw_nbdcopy_ms: r1(rawMs),
    raw_runs_ms: raw.map(r1),
    hydrate_mb_s: r1(sizeBytes / 1e6 / (hMs / 1000)),
    raw_mb_s: r1(sizeBytes / 1e6 / (rawMs / 1000)),
    hydrate_vs_raw: Math.round((hMs / rawMs) * 100) / 100,
  };
}

async function measureSize(baseMiB: number, runs: number): Promise<SizeResult> {
  const fileMiB = Math.min(256, baseMiB);
  const files = Array.from({ length: Math.ceil(baseMiB / fileMiB) }, () => fileMiB);
  const pool = await makeTestPool({
    sizeMiB: Math.ceil(baseMiB * 2.6) + 512,
    prefix: "protoctl-bench-origin-",
  });
  const state = await makeTmpfsDir(Math.ceil(baseMiB * 1.7) + 1024, "protoctl-bench-target-");
  const att = new SeedAttachments();
  // As an agent does at start-up: the copy's worker threads are started before any push.
  att.warm();
  const stops: Array<() => Promise<unknown>> = [];
  try {
    const base = await makeBaseSubvolume(pool.mountpoint, "bench@1", files);
    const p0 = performance.now();
    const seed = await publishSeedImage(base, join(pool.tmpfs, "bench@1.img"));
    const publishMs = performance.now() - p0;
    // As agents serve a cluster that joined with TLS: certificates of one CA on both sides.
    const ca = await makeTestCa(join(pool.tmpfs, "ca"));
    const serverTls = await ca.issue("origin", "127.0.0.1");
    const clientTls = await ca.issue("target", "127.0.0.1");
    const serve = async (tls: boolean) => {
      const exp = await serveImage({
        image: seed.path,
        exportName: "bench@1",
        bindAddress: "127.0.0.1",
        stateDir: pool.tmpfs,
        tls: tls ? serverTls : undefined,
      });
      stops.push(() => exp.stop());
      return exp;
    };
    const info = { sizeBytes: seed.sizeBytes, checksum: seed.checksum, subvolume: "bench@1" };
    const base0 = { key: "bench@1", seed: info, stateDir: state.path, sproutBytes: 512 * MiB };
    const tlsExp = await serve(true);
    const rawTlsDir = await makeTlsDir(join(pool.tmpfs, "raw-tls"), clientTls, "client");
    const tls = await measureExport(
      att,
      { ...base0, uri: tlsExp.uri, tls: clientTls },
      withClientTls(tlsExp.uri, rawTlsDir),
      state.path,
      seed.sizeBytes,
      runs,
    );
    const plainExp = await serve(false);
    const plain = await measureExport(
      att,
      { ...base0, uri: plainExp.uri },
      plainExp.uri,
      state.path,
      seed.sizeBytes,
      runs,
    );
    return {
      base_mib: baseMiB,
      image_bytes: seed.sizeBytes,
      publish_ms: r1(publishMs),
      ...tls,
      plain,
    };
  } finally {
    await att.close().catch(() => undefined);
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await state.cleanup();
    await pool.cleanup();
  }
}

async function measureDelta(): Promise<{ delta_bytes: number; delta_ms: number }> {
  const origin = await makeTestPool({ sizeMiB: 768, prefix: "protoctl-bench-delta-" });
  const target = await makeTestPool({ sizeMiB: 768, prefix: "protoctl-bench-delta-" });
  try {
    const v1 = await makeBaseSubvolume(origin.mountpoint, "d@1", [128]);
    const v2 = join(origin.mountpoint, "d@2");
    await run("btrfs", ["subvolume", "snapshot", v1, v2]);
    await writeRandomFile(join(v2, "data", "new"), 8);
    await writeFile(join(v2, "etc/motd"), "v2\n");
    await run("btrfs", ["property", "set", "-ts", v2, "ro", "true"]);
    await run("btrfs", ["filesystem", "sync", origin.mountpoint]);
    const full = sendSubvolume({ subvolume: v1 });
    await receiveSubvolume({ dir: target.mountpoint, stream: full.stream });
    await full.done;
    let bytes = 0;
    const t = performance.now();
    const d = sendSubvolume({ subvolume: v2, parent: v1 });
    d.stream.on("data", (b: Buffer) => {
      bytes += b.length;
    });
    await receiveSubvolume({ dir: target.mountpoint, stream: d.stream });
    await d.done;
    return { delta_bytes: bytes, delta_ms: r1(performance.now() - t) };
  } finally {
    await target.cleanup();
    await origin.cleanup();
  }
}

async function main(): Promise<void> {
  const runs = arg("runs", 5);
  const small = await measureSize(arg("small", 256), runs);
  console.log(JSON.stringify({ size: "small", ...small }));
  const large = await measureSize(arg("large", 2048), runs);
  console.log(JSON.stringify({ size: "large", ...large }));
  const delta = await measureDelta();
  const usableRatio = Math.round((large.usable_ms / small.usable_ms) * 100) / 100;
  const worstHydrate = Math.max(small.hydrate_vs_raw, large.hydrate_vs_raw);
  console.log(
    JSON.stringify({
      bench: "propagate",
      runs,
      small,
      large,
      usable_ratio: usableRatio,
      usable_ratio_target: 1.2,
      hydrate_vs_raw_target: 1.3,
      ...delta,
      fanout: "see npm run bench -- propagate-fleet (controller + agents in network namespaces)",
      ok: usableRatio <= 1.2 && worstHydrate <= 1.3,
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
