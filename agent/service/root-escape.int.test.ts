/**
 * Writes into an env root never leave it (issue #15 item 4), through
 * AgentService on a real btrfs pool: a busybox base whose /etc/hostname,
 * /etc/hosts, a directory and a file are symlinks to files the test made on
 * the host. Env create must leave every host file as it was; what happens
 * instead: a symlink in the last component is *replaced* inside the root (the
 * env gets its own file), a symlinked parent directory is followed *inside*
 * the root (the file lands where root in the env would have written it), and
 * what cannot be resolved inside (a parent that is a file, `..`) is refused
 * with a clear code and no env left behind.
 */
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import { fromServiceError } from "../../common/grpc.js";
import { type Env, EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import {
  type AgentClient,
  agentClient,
  execOverGrpc,
  importDirBase,
  startLoopbackAgent,
  stopLoopbackAgent,
  unary,
} from "../../test/support/agent/agent-client.js";
import type { RunningAgent } from "../main.js";

const NODE = `esc${process.pid}`;
let stateDir: string;
let rootfs: string;
let host: string;
let agent: RunningAgent;
let client: AgentClient;

const HOST_TEXT = "host file, must stay\n";
const hostFiles = () => ({
  hostname: join(host, "hostname"),
  hosts: join(host, "hosts"),
  conf: join(host, "linked.conf"),
  dirFile: join(host, "dir/app.conf"),
});

function spec(name: string, over: Partial<EnvSpec> = {}): EnvSpec {
  return EnvSpec.fromPartial({ name, base: { name: "trap", version: 0 }, start: false, ...over });
}
const create = (s: EnvSpec) => unary<object, Env>(client, "createEnv", { spec: s, generation: 1 });
const file = (path: string, text: string) => ({ path, content: Buffer.from(text), mode: 0o644 });

async function rootOf(name: string): Promise<string> {
  const r = await agent.ctx.pool.openEnvRoot(name);
  if (!r) throw new Error(`no root for ${name}`);
  return r.rootDir;
}

async function expectHostUntouched(): Promise<void> {
  for (const f of Object.values(hostFiles())) expect(await readFile(f, "utf8")).toBe(HOST_TEXT);
}

beforeAll(async () => {
  host = await mkdtemp(join(tmpdir(), "protoctl-escape-host-"));
  await mkdir(join(host, "dir"));
  for (const f of Object.values(hostFiles())) await writeFile(f, HOST_TEXT);
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-escape-rootfs-"));
  await makeBusyboxRootfs(rootfs);
  const h = hostFiles();
  await unlink(join(rootfs, "etc/hostname"));
  await symlink(h.hostname, join(rootfs, "etc/hostname"));
  await symlink(h.hosts, join(rootfs, "etc/hosts"));
  await symlink(h.conf, join(rootfs, "etc/linked.conf"));
  await symlink(join(host, "dir"), join(rootfs, "etc/app"));
  // relative, climbing far above the root, then down to the host dir
  await symlink(`../../../../../../../../..${join(host, "dir")}`, join(rootfs, "etc/up"));
  await writeFile(join(rootfs, "etc/plain"), "a file, not a directory\n");

  stateDir = await mkdtemp(join(tmpdir(), "protoctl-escape-it-"));
  agent = await startLoopbackAgent({ name: NODE, stateDir, poolMiB: 512 });
  client = agentClient(agent.address);
  await importDirBase(client, "trap", rootfs);
});

afterAll(async () => {
  client?.close();
  await stopLoopbackAgent(agent);
  for (const d of [stateDir, rootfs, host]) if (d) await rm(d, { recursive: true, force: true });
});

describe("env create on a base with symlinks to host files", () => {
  it("replaces symlinked /etc/hostname and /etc/hosts inside the root; host files unchanged", async () => {
    await create(spec("names", { hostname: "inside", start: true }));
    await expectHostUntouched();
    const root = await rootOf("names");
    for (const f of ["etc/hostname", "etc/hosts"]) expect((await lstat(join(root, f))).isFile()).toBe(true);
    expect(await readFile(join(root, "etc/hostname"), "utf8")).toBe("inside\n");
    const r = await execOverGrpc(client, { env: "names", command: ["cat", "/etc/hostname", "/etc/hosts"] });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("inside\n");
    expect(r.stdout).not.toContain(HOST_TEXT);
    await agent.ctx.envs.delete("names");
    await expectHostUntouched();
  });

  it("a files: target that is itself a symlink is replaced, not written through", async () => {
    await create(spec("target", { files: [file("/etc/linked.conf", "env conf\n")] }));
    await expectHostUntouched();
    const root = await rootOf("target");
    expect((await lstat(join(root, "etc/linked.conf"))).isFile()).toBe(true);
    expect(await readFile(join(root, "etc/linked.conf"), "utf8")).toBe("env conf\n");
    await agent.ctx.envs.delete("target");
  });

  it("a files: target under a symlinked directory (absolute or climbing) lands inside the root", async () => {
    await create(
      spec("parent", {
        files: [file("/etc/app/app.conf", "via abs\n"), file("/etc/up/app2.conf", "via rel\n")],
      }),
    );
    await expectHostUntouched();
    const root = await rootOf("parent");
    // both links resolve, taken inside the root, to <root><host>/dir
    expect(await readFile(join(root, host, "dir/app.conf"), "utf8")).toBe("via abs\n");
    expect(await readFile(join(root, host, "dir/app2.conf"), "utf8")).toBe("via rel\n");
    await expect(lstat(join(host, "dir/app2.conf"))).rejects.toMatchObject({ code: "ENOENT" });
    await agent.ctx.envs.delete("parent");
  });

  it("refuses '..' and a parent that is a file, leaving no env", async () => {
    await expect(create(spec("dots", { files: [file("/etc/../../x", "x")] }))).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
    });
    await expect(create(spec("notdir", { files: [file("/etc/plain/x", "x")] }))).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      reason: "PATH_NOT_DIRECTORY",
      message: expect.stringContaining("/etc/plain"),
    });
    for (const n of ["dots", "notdir"]) {
      await expect(unary(client, "getEnv", { name: n })).rejects.toMatchObject({ code: Code.NOT_FOUND });
      expect(await agent.ctx.pool.openEnvRoot(n)).toBeUndefined();
    }
    await expectHostUntouched();
  });
});

/** ImportBase of a tar archive on the agent's host; resolves with the stream's error, if any. */
function importTar(name: string, tar: string): Promise<unknown> {
  return new Promise((resolve) => {
    const call = client.importBase(new Metadata());
    call.on("data", () => undefined);
    call.on("error", (err) => resolve(fromServiceError(err)));
    call.on("end", () => resolve(undefined));
    call.write({
      part: { $case: "header", header: { name, source: { source: { $case: "tar", tar } }, compression: "" } },
    });
    call.end();
  });
}

describe("tar import with members through symlinks", () => {
  it("never writes through a symlink the archive itself planted", async () => {
    // a.tar: etc/evil -> <host>/dir (absolute) and etc/rel -> ../../..<host>/dir, then etc/evil/pwned
    // and etc/rel/pwned2 appended, members that only escape if the links are followed
    const work = await mkdtemp(join(tmpdir(), "protoctl-escape-tar-"));
    try {
      const links = join(work, "links");
      const files = join(work, "files");
      await mkdir(join(links, "etc"), { recursive: true });
      await symlink(join(host, "dir"), join(links, "etc/evil"));
      await symlink(`../../../../../../..${join(host, "dir")}`, join(links, "etc/rel"));
      await mkdir(join(files, "etc/evil"), { recursive: true });
      await mkdir(join(files, "etc/rel"), { recursive: true });
      await writeFile(join(files, "etc/evil/pwned"), "escaped\n");
      await writeFile(join(files, "etc/rel/pwned2"), "escaped\n");
      const tar = join(work, "a.tar");
      await run("tar", ["-cf", tar, "-C", links, "etc"]);
      await run("tar", ["-rf", tar, "-C", files, "etc/evil/pwned", "etc/rel/pwned2"]);
      const err = await importTar("tarred", tar);
      // GNU tar refuses these members (or extracts them inside): either way nothing on the host
      for (const f of ["pwned", "pwned2"]) {
        await expect(lstat(join(host, "dir", f))).rejects.toMatchObject({ code: "ENOENT" });
      }
      await expectHostUntouched();
      if (err) expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "BAD_ARCHIVE" });
      console.log(
        `tar with members through planted symlinks: ${err ? `refused (${(err as Error).message.split("\n")[0]})` : "imported inside the root"}`,
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
