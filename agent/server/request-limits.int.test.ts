/**
 * Bounded input at the agent (issue #15 item 8), over real gRPC on a real
 * pool: a request message above MAX_REQUEST_BYTES is refused by grpc-js from
 * its length prefix (RESOURCE_EXHAUSTED, the handler never runs), and a base
 * upload above the agent's limit is refused while streaming, its temp file
 * removed and no base made.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { fromServiceError, MAX_REQUEST_BYTES } from "../../common/grpc.js";
import { type Env, EnvSpec, type OperationEvent } from "../../proto/gen/protoctl/v1/types.js";
import {
  type AgentClient,
  agentClient,
  startLoopbackAgent,
  stopLoopbackAgent,
  unary,
} from "../../test/support/agent/agent-client.js";
import type { RunningAgent } from "../main.js";

const NODE = `lim${process.pid}`;
const UPLOAD_LIMIT = 1 << 20;
let stateDir: string;
let agent: RunningAgent;
let client: AgentClient;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-limits-it-"));
  agent = await startLoopbackAgent({
    name: NODE,
    stateDir,
    poolMiB: 256,
    over: { maxUploadBytes: UPLOAD_LIMIT },
  });
  client = agentClient(agent.address);
});

afterAll(async () => {
  client?.close();
  await stopLoopbackAgent(agent);
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

/** Streams `bytes` of upload in 256 KiB chunks; resolves with the stream's error (or undefined). */
function upload(name: string, bytes: number): Promise<unknown> {
  return new Promise((resolve) => {
    const call = client.importBase(new Metadata());
    call.on("data", (_e: OperationEvent) => undefined);
    call.on("error", (err) => resolve(fromServiceError(err)));
    call.on("end", () => resolve(undefined));
    call.write({
      part: {
        $case: "header",
        header: { name, source: { source: { $case: "upload", upload: true } }, compression: "" },
      },
    });
    const chunk = Buffer.alloc(256 * 1024, 1);
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!call.write({ part: { $case: "chunk", chunk } })) return void call.once("drain", pump);
      }
      call.end();
    };
    pump();
  });
}

describe("request limits at the agent", () => {
  it("refuses a request message above MAX_REQUEST_BYTES with RESOURCE_EXHAUSTED; nothing is made", async () => {
    const big = Buffer.alloc(MAX_REQUEST_BYTES + 1024, 0x61);
    const spec = EnvSpec.fromPartial({
      name: "huge",
      base: { name: "none", version: 0 },
      files: [{ path: "/big", content: big, mode: 0o644 }],
    });
    await expect(unary<object, Env>(client, "createEnv", { spec, generation: 1 })).rejects.toMatchObject({
      code: Code.RESOURCE_EXHAUSTED,
      // said by the server (the client's send limit would say "Sent message")
      message: expect.stringMatching(/Received message larger than max/),
    });
    await expect(unary(client, "getEnv", { name: "huge" })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    // the server is still fine after it
    expect(await unary(client, "listEnvs", {})).toBeDefined();
  });

  it("refuses a base upload above the limit while it streams; no base, no temp file left", async () => {
    const err = await upload("toobig", 4 * UPLOAD_LIMIT);
    expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "UPLOAD_TOO_LARGE" });
    const uploads = await readdir(join(stateDir, "uploads")).catch(() => []);
    expect(uploads).toEqual([]);
    const bases = await unary<object, { bases: Array<{ name: string }> }>(client, "listBases", {});
    expect(bases.bases.map((b) => b.name)).not.toContain("toobig");
  });
});
