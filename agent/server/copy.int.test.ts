/**
 * `env cp` on a real agent: a busybox env in a user namespace (running, then
 * stopped) gets a directory copied in over gRPC and gives files back, owners
 * and modes as seen inside the env; symlinks planted inside that climb out of
 * the root are refused both ways, and a refused copy changes nothing.
 */

import { chown, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import { fromServiceError } from "../../common/grpc.js";
import { applyCopyStream, readTree, TreeWriter } from "../../common/tree-copy.js";
import { type CopyChunk, type CopyResult, type Env, EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import {
  type AgentClient,
  type BusyboxAgent,
  execOverGrpc,
  startBusyboxAgent,
  unary,
} from "../../test/support/agent/agent-client.js";

const NODE = `cp${process.pid}`;
let bed: BusyboxAgent;
let local: string;
let client: AgentClient;

beforeAll(async () => {
  local = await mkdtemp(join(tmpdir(), "protoctl-cp-local-"));
  bed = await startBusyboxAgent({ name: NODE, poolMiB: 256 });
  client = bed.client;
});

afterAll(async () => {
  await bed?.close();
  if (local) await rm(local, { recursive: true, force: true });
});

function copyIn(env: string, localPath: string, dest: string): Promise<CopyResult> {
  return new Promise((resolve, reject) => {
    const call = client.copyIn(new Metadata(), (err, r) =>
      err ? reject(fromServiceError(err)) : resolve(r!),
    );
    (async () => {
      call.write({ part: { $case: "header", header: { env, path: dest, totalBytes: 0, totalEntries: 0 } } });
      for await (const p of readTree("/", localPath)) {
        if (!call.write({ part: p })) await new Promise((r) => call.once("drain", r));
      }
      call.end();
    })().catch(reject);
  });
}

function copyOut(env: string, path: string, dest: string): Promise<CopyResult> {
  const call = client.copyOut({ env, path });
  async function* chunks(): AsyncGenerator<CopyChunk> {
    try {
      for await (const c of call) yield c as CopyChunk;
    } catch (err) {
      throw fromServiceError(err);
    }
  }
  return applyCopyStream(chunks(), () => new TreeWriter("/", dest));
}

const sh = async (env: string, script: string) => {
  const r = await execOverGrpc(client, { env, command: ["/bin/sh", "-c", script] });
  expect(r.code, `${script}: ${r.stderr}`).toBe(0);
  return r.stdout.trim();
};

it("copies in and out of a running and a stopped env, owners mapped, escapes refused", async () => {
  const env = "cpenv";
  await unary<object, Env>(client, "createEnv", {
    spec: EnvSpec.fromPartial({ name: env, base: { name: "busybox", version: 0 }, start: true }),
    generation: 1,
  });
  try {
    // in: a directory with an owned file and a nested dir, to an existing dir
    const site = join(local, "site");
    await mkdir(join(site, "sub"), { recursive: true });
    await writeFile(join(site, "index.html"), "<h1>hi</h1>", { mode: 0o640 });
    await chown(join(site, "index.html"), 1234, 2345);
    await writeFile(join(site, "sub/big.bin"), Buffer.alloc(3 * 2 ** 20, 1));
    await sh(env, "mkdir -p /srv");
    const r = await copyIn(env, site, "/srv");
    expect(r.entries).toBe(4);
    expect(r.bytes).toBe(11 + 3 * 2 ** 20);
    expect(await sh(env, "cat /srv/site/index.html")).toBe("<h1>hi</h1>");
    // inside the user namespace the owner is the one copied: 1234:2345, mode 640
    expect(await sh(env, "stat -c '%u %g %a' /srv/site/index.html")).toBe("1234 2345 640");
    expect(await sh(env, "stat -c %s /srv/site/sub/big.bin")).toBe(String(3 * 2 ** 20));

    // out: a file written and chowned inside the env
    await sh(
      env,
      "echo from-inside > /root/out.txt && chown 1000:1000 /root/out.txt && chmod 600 /root/out.txt",
    );
    const outDir = join(local, "out");
    await mkdir(outDir);
    await copyOut(env, "/root/out.txt", outDir);
    expect(await readFile(join(outDir, "out.txt"), "utf8")).toBe("from-inside\n");
    const st = await stat(join(outDir, "out.txt"));
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([1000, 1000, 0o600]);

    // escapes: a link inside climbing out of the root, both directions; nothing is written
    await sh(env, "ln -s ../../../../../../../../tmp /root/esc");
    const out = await copyOut(env, "/root/esc/x", outDir).catch((e: unknown) => ProtoctlError.from(e));
    expect(out).toBeInstanceOf(ProtoctlError);
    expect((out as ProtoctlError).code).toBe(Code.FAILED_PRECONDITION);
    expect((out as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
    const marker = join(local, "marker");
    await writeFile(marker, "m");
    const inn = await copyIn(env, marker, "/root/esc/").catch((e: unknown) => ProtoctlError.from(e));
    expect((inn as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
    const bad = await copyIn(env, marker, "/root/esc/deeper/x").catch((e: unknown) => ProtoctlError.from(e));
    expect((bad as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
    // an absolute link is followed inside the root only: this is the env's /etc, not the host's
    await sh(env, "ln -s /etc /root/etc-link");
    await copyIn(env, marker, "/root/etc-link/");
    expect(await sh(env, "cat /etc/marker")).toBe("m");
    await expect(stat("/etc/marker")).rejects.toThrow(/ENOENT/);

    // stopped: still copies both ways
    await unary(client, "stopEnv", { name: env, timeoutMs: 5000, force: false });
    await copyIn(env, marker, "/root/after-stop");
    await copyOut(env, "/root/after-stop", join(local, "back"));
    expect(await readFile(join(local, "back"), "utf8")).toBe("m");
  } finally {
    await unary(client, "deleteEnv", { name: env });
  }
}, 120_000);

it("a running env's own tmpfs: cp in and out see its content, not the disk under it; escapes and kernel files refused", async () => {
  const env = "cptmpfs";
  await unary<object, Env>(client, "createEnv", {
    spec: EnvSpec.fromPartial({ name: env, base: { name: "busybox", version: 0 }, start: true }),
    generation: 1,
  });
  try {
    await sh(
      env,
      "mkdir -p /mnt/t && mount -t tmpfs -o size=8m tmpfs /mnt/t && echo in-tmpfs > /mnt/t/inside",
    );
    await sh(env, "chown 1000:1000 /mnt/t/inside");
    // in: a file and a directory with a nested file and a link
    const tree = join(local, "tree");
    await mkdir(join(tree, "d"), { recursive: true });
    await writeFile(join(tree, "d/f"), "nested");
    await chown(join(tree, "d/f"), 1234, 2345);
    await symlink("d/f", join(tree, "l"));
    const marker = join(local, "tmpfs-marker");
    await writeFile(marker, "m");
    await copyIn(env, marker, "/mnt/t/x");
    await copyIn(env, tree, "/mnt/t/");
    expect(await sh(env, "cat /mnt/t/x /mnt/t/tree/d/f /mnt/t/tree/l")).toBe("mnestednested");
    expect(await sh(env, "stat -c '%u %g' /mnt/t/tree/d/f")).toBe("1234 2345");
    expect(await sh(env, "stat -c '%u %g' /mnt/t/x /mnt/t/tree")).toBe("0 0\n0 0");
    // the disk under the mount got nothing
    const disk = bed.agent.ctx.envs.rootDirOf(env);
    await expect(stat(join(disk, "mnt/t/x"))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(disk, "mnt/t/tree"))).rejects.toThrow(/ENOENT/);

    // out: the tmpfs's file, its in-env owner
    await copyOut(env, "/mnt/t/inside", join(local, "inside"));
    expect(await readFile(join(local, "inside"), "utf8")).toBe("in-tmpfs\n");
    expect((await stat(join(local, "inside"))).uid).toBe(1000);

    // a link on the tmpfs climbing out of the root: refused both ways, nothing written
    await sh(env, "ln -s ../../../../../../../../tmp /mnt/t/esc");
    const out = await copyOut(env, "/mnt/t/esc/x", local).catch((e: unknown) => ProtoctlError.from(e));
    expect((out as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
    const inn = await copyIn(env, marker, "/mnt/t/esc/").catch((e: unknown) => ProtoctlError.from(e));
    expect((inn as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
    await expect(stat("/tmp/tmpfs-marker")).rejects.toThrow(/ENOENT/);
    // the env's own procfs is the kernel's, not the env's files: the host's root reads nothing there
    const proc = await copyOut(env, "/proc/version", local).catch((e: unknown) => ProtoctlError.from(e));
    expect((proc as ProtoctlError).reason).toBe("PATH_REFUSED");
  } finally {
    await unary(client, "deleteEnv", { name: env });
  }
}, 120_000);
