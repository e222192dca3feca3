/** Streaming commands against the stub: exec, logs, base import (path and upload), progress output. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlImportBaseRequest } from "../../proto/gen/protoctl/v1/control.js";
import type { ExecInput, OperationEvent } from "../../proto/gen/protoctl/v1/types.js";
import { runCli, type Stub, startStub } from "../../test/support/cli/stub-server.js";

interface Duplex<I, O> {
  on(ev: "data", f: (m: I) => void): void;
  on(ev: "end", f: () => void): void;
  write(m: O): void;
  end(): void;
  emit(ev: "error", e: unknown): void;
}

let stub: Stub;
let execInputs: ExecInput[] = [];
let imports: ControlImportBaseRequest[][] = [];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-stream-"));
  stub = await startStub({
    execEnv: (call: Duplex<ExecInput, unknown>) => {
      const inputs: ExecInput[] = [];
      execInputs = inputs;
      call.on("data", (m) => {
        inputs.push(m);
        const i = m.input;
        if (i?.$case === "start") {
          if (i.start.env === "ghost") {
            call.emit("error", { code: status.NOT_FOUND, details: 'no env named "ghost"' });
            return;
          }
          call.write({ output: { $case: "startedPid", startedPid: 42 } });
          call.write({
            output: { $case: "stdout", stdout: Buffer.from(`ran ${i.start.command.join(" ")}\n`) },
          });
          call.write({ output: { $case: "stderr", stderr: Buffer.from("to stderr\n") } });
        }
        if (i?.$case === "stdinEof") {
          const start = inputs[0]?.input;
          const code = start?.$case === "start" && start.start.command[0] === "false" ? 1 : 0;
          call.write({ output: { $case: "exitCode", exitCode: code } });
          call.end();
        }
      });
    },
    envLogs: (call: { request: { env: string; follow: boolean }; write(m: unknown): void; end(): void }) => {
      call.write({ stream: "stdout", data: Buffer.from("line 1\n"), timeMs: 1 });
      call.write({ stream: "stderr", data: Buffer.from("oops\n"), timeMs: 2 });
      call.end();
    },
    importBase: (call: Duplex<ControlImportBaseRequest, OperationEvent>) => {
      const got: ControlImportBaseRequest[] = [];
      imports.push(got);
      call.on("data", (m) => got.push(m));
      call.on("end", () => {
        call.write({
          event: {
            $case: "progress",
            progress: {
              step: "unpacking",
              fraction: 0.5,
              message: "",
              node: "n1",
              bytesDone: 0,
              bytesTotal: 0,
            },
          },
        });
        call.write({
          event: {
            $case: "log",
            log: { stream: "stdout", data: Buffer.from("hello from the agent\n"), timeMs: 0 },
          },
        });
        call.write({
          event: {
            $case: "result",
            result: {
              result: {
                $case: "baseVersion",
                baseVersion: {
                  base: "bb",
                  version: 1,
                  source: "",
                  createdMs: 0,
                  recipeDigest: "",
                  sizeBytes: 3 * 1048576,
                  state: 1,
                  nodes: [],
                  origin: "",
                  sealedMs: 0,
                  checksum: "",
                  holders: [],
                  foreign: false,
                  foreignNodes: [],
                  users: [],
                  parent: "",
                },
              },
            },
          },
        });
        call.end();
      });
    },
  });
});
afterAll(async () => {
  await stub.stop();
  await rm(dir, { recursive: true, force: true });
});

const at = (extra: Record<string, string> = {}) => ({ PROTOCTL_CONTROLLER: stub.address, ...extra });

describe("env exec", () => {
  it("streams stdout and stderr apart and exits with the command's status", async () => {
    const ok = await runCli(["env", "exec", "demo", "--", "echo", "hi"], at());
    expect(ok).toEqual({ code: 0, stdout: "ran echo hi\n", stderr: "to stderr\n" });
    const start = execInputs[0]?.input;
    expect(start).toMatchObject({
      $case: "start",
      start: { env: "demo", command: ["echo", "hi"], tty: false },
    });
    // without -i the command gets end-of-file at once
    expect(execInputs[1]?.input).toEqual({ $case: "stdinEof", stdinEof: true });
    const bad = await runCli(["env", "exec", "demo", "--", "false"], at());
    expect(bad.code).toBe(1);
  });
  it("an unknown env exits 3 with the server's message", async () => {
    const r = await runCli(["env", "exec", "ghost", "--", "true"], at());
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no env named "ghost"');
  });
  it("-t without a terminal is a usage error", async () => {
    const r = await runCli(["env", "exec", "-t", "demo", "--", "sh"], at());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("-t needs a terminal");
  });
});

describe("env logs", () => {
  it("writes each stream where it belongs", async () => {
    const r = await runCli(["env", "logs", "demo"], at());
    expect(r).toEqual({ code: 0, stdout: "line 1\n", stderr: "oops\n" });
  });
});

describe("base import", () => {
  it("sends an absolute path to a local controller", async () => {
    imports = [];
    const rootfs = join(dir, "rootfs");
    await (await import("node:fs/promises")).mkdir(rootfs);
    const r = await runCli(["base", "import", "bb", "--dir", rootfs], at());
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("base/bb@1 imported (3.0M)\n");
    // plain progress on stderr (not a TTY)
    expect(r.stderr).toContain("[n1] unpacking 50%");
    expect(r.stderr).toContain("  | hello from the agent");
    expect(imports[0]).toEqual([
      {
        part: {
          $case: "header",
          header: {
            name: "bb",
            node: "",
            compression: "",
            source: { source: { $case: "dir", dir: rootfs } },
          },
        },
      },
    ]);
  });
  it("uploads a tar in chunks with --upload", async () => {
    imports = [];
    const tar = join(dir, "rootfs.tar.gz");
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    await writeFile(tar, bytes);
    const r = await runCli(["base", "import", "bb", "--tar", tar, "--upload"], at());
    expect(r.code).toBe(0);
    const [header, ...chunks] = imports[0]!;
    expect(header).toMatchObject({
      part: {
        $case: "header",
        header: { compression: "gzip", source: { source: { $case: "upload", upload: true } } },
      },
    });
    const sent = Buffer.concat(
      chunks.map((c) => (c.part?.$case === "chunk" ? c.part.chunk : Buffer.alloc(0))),
    );
    expect(sent.equals(bytes)).toBe(true);
    expect(chunks.length).toBeGreaterThan(1);
  });
  it("uploads a directory as a tar stream", async () => {
    imports = [];
    const rootfs = join(dir, "up");
    await (await import("node:fs/promises")).mkdir(join(rootfs, "etc"), { recursive: true });
    await writeFile(join(rootfs, "etc/hostname"), "x\n");
    const r = await runCli(["base", "import", "bb", "--dir", rootfs, "--upload"], at());
    expect(r.code).toBe(0);
    const sent = Buffer.concat(
      imports[0]!.slice(1).map((c) => (c.part?.$case === "chunk" ? c.part.chunk : Buffer.alloc(0))),
    );
    expect(sent.subarray(257, 262).toString()).toBe("ustar");
    expect(sent.includes(Buffer.from("./etc/hostname"))).toBe(true);
  });
  it("a remote controller gets an upload by default", async () => {
    const { shouldUpload } = await import("./base-import.js");
    expect(shouldUpload({ controller: "10.0.0.1:7443", name: "x", source: "context" }, undefined)).toBe(true);
    expect(shouldUpload({ controller: "127.0.0.1:7443", name: "x", source: "context" }, undefined)).toBe(
      false,
    );
    expect(
      shouldUpload({ controller: "127.0.0.1:7443", upload: true, name: "x", source: "context" }, undefined),
    ).toBe(true);
    expect(shouldUpload({ controller: "10.0.0.1:7443", name: "x", source: "context" }, false)).toBe(false);
  });
  it("a missing directory is a usage error before any RPC", async () => {
    const before = stub.calls.length;
    const r = await runCli(["base", "import", "bb", "--dir", join(dir, "nope")], at());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("does not exist");
    expect(stub.calls.length).toBe(before);
  });
});
