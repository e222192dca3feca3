/**
 * Every unary call has a deadline (issue #15 item 8): against a real server on
 * loopback that never answers, the lean HTTP/2 path and a grpc-js client with
 * the default-deadline interceptor both give DEADLINE_EXCEEDED, and an
 * oversize response is refused instead of buffered.
 */
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentServiceClient, AgentServiceService } from "../proto/gen/protoctl/v1/agent.js";
import { Env } from "../proto/gen/protoctl/v1/types.js";
import { Code } from "./errors.js";
import { callUnary } from "./grpc.js";
import { defaultUnaryDeadline } from "./grpc-deadline.js";
import { H2Unary } from "./h2-unary.js";

let server: Server;
let address: string;

beforeAll(async () => {
  server = new Server();
  server.addService(AgentServiceService, {
    // never answers
    startEnv: () => undefined,
    // answers with ~2 MB
    getEnv: (_call: unknown, cb: (e: unknown, r?: unknown) => void) =>
      cb(null, Env.fromPartial({ spec: { name: "big" }, status: { message: "x".repeat(2 << 20) } })),
  } as never);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => {
  server?.forceShutdown();
});

describe("call deadlines", () => {
  it("H2Unary gives a call without its own deadline the default one", async () => {
    const h2 = new H2Unary({ address, insecure: true, defaultDeadlineMs: 300 });
    try {
      const t0 = performance.now();
      await expect(h2.unary(AgentServiceService.startEnv, { name: "x" })).rejects.toMatchObject({
        code: Code.DEADLINE_EXCEEDED,
      });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
    } finally {
      h2.close();
    }
  });

  it("H2Unary refuses a response above its limit", async () => {
    const h2 = new H2Unary({ address, insecure: true, maxResponseBytes: 1 << 20 });
    try {
      await expect(h2.unary(AgentServiceService.getEnv, { name: "big" })).rejects.toMatchObject({
        code: Code.RESOURCE_EXHAUSTED,
      });
      const ok = new H2Unary({ address, insecure: true });
      expect((await ok.unary(AgentServiceService.getEnv, { name: "big" })).spec?.name).toBe("big");
      ok.close();
    } finally {
      h2.close();
    }
  });

  it("the grpc-js interceptor gives unary calls a deadline", async () => {
    const client = new AgentServiceClient(
      address,
      (await import("@grpc/grpc-js")).credentials.createInsecure(),
      {
        interceptors: [defaultUnaryDeadline(300)],
      },
    );
    try {
      await expect(callUnary(client.startEnv.bind(client) as never, { name: "x" })).rejects.toMatchObject({
        code: Code.DEADLINE_EXCEEDED,
      });
    } finally {
      client.close();
    }
  });
});
