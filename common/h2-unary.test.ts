import { describe, expect, it } from "vitest";
import { Env, ErrorDetail } from "../proto/gen/protoctl/v1/types.js";
import { ERROR_DETAIL_KEY } from "./errors.js";
import { frame, statusFromHeaders, unframe } from "./h2-unary.js";

describe("gRPC framing over http2", () => {
  it("frames and unframes one message", () => {
    const msg = Buffer.from([1, 2, 3]);
    const f = frame(msg);
    expect([...f.subarray(0, 5)]).toEqual([0, 0, 0, 0, 3]);
    expect(unframe(f).equals(msg)).toBe(true);
    expect(unframe(frame(new Uint8Array()))).toHaveLength(0);
  });
  it("rejects short, cut and compressed bodies", () => {
    expect(() => unframe(Buffer.alloc(2))).toThrow(/empty response/);
    expect(() => unframe(Buffer.from([0, 0, 0, 0, 9, 1]))).toThrow(/cut short/);
    expect(() => unframe(Buffer.from([1, 0, 0, 0, 0]))).toThrow(/compressed/);
  });
  it("reads status, percent-encoded message and the ErrorDetail trailer", () => {
    const detail = Buffer.from(
      ErrorDetail.encode(ErrorDetail.fromPartial({ reason: "X", hint: "do y" })).finish(),
    );
    const s = statusFromHeaders({
      "grpc-status": "5",
      "grpc-message": "no%20env%20named%20%22a%22",
      [ERROR_DETAIL_KEY]: detail.toString("base64").replace(/=+$/, ""),
    });
    expect(s.code).toBe(5);
    expect(s.message).toBe('no env named "a"');
    expect(ErrorDetail.decode(s.md[ERROR_DETAIL_KEY]![0]!)).toMatchObject({ reason: "X", hint: "do y" });
    expect(statusFromHeaders({}).code).toBe(2);
  });
});

describe("H2Unary against servers", () => {
  it("calls a grpc-js server through a service definition and maps its errors", async () => {
    const { Server, ServerCredentials } = await import("@grpc/grpc-js");
    const { AgentServiceService } = await import("../proto/gen/protoctl/v1/agent.js");
    const { H2Unary } = await import("./h2-unary.js");
    const { notFound } = await import("./errors.js");
    const { toServiceError } = await import("./grpc.js");
    const server = new Server();
    server.addService(AgentServiceService, {
      startEnv: (call: { request: { name: string } }, cb: (e: unknown, r?: unknown) => void) =>
        call.request.name === "there"
          ? cb(null, Env.fromPartial({ spec: { name: "there" }, status: { message: "running" } }))
          : cb(toServiceError(notFound(`no env ${call.request.name}`, { reason: "ENV_NOT_FOUND" }))),
    } as never);
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
    );
    const h2 = new H2Unary({ address: `127.0.0.1:${port}`, insecure: true });
    try {
      const env = await h2.unary(AgentServiceService.startEnv, { name: "there" }, { deadlineMs: 5000 });
      expect(env.spec?.name).toBe("there");
      expect(env.status?.message).toBe("running");
      await expect(h2.unary(AgentServiceService.startEnv, { name: "gone" })).rejects.toMatchObject({
        code: 5,
        reason: "ENV_NOT_FOUND",
        message: "no env gone",
      });
    } finally {
      h2.close();
      server.forceShutdown();
    }
  });

  it("drops a connection that answers nothing past a deadline, and dials afresh", async () => {
    let answer = false;
    // until `answer`: a peer that took the call and went silent
    const { server, h2, sessions } = await okServer(() => answer);
    try {
      await expect(h2.call("/x.Y/Z", Buffer.alloc(0), { deadlineMs: 200 })).rejects.toMatchObject({
        code: 4,
      });
      answer = true;
      expect((await h2.call("/x.Y/Z", Buffer.alloc(0), { deadlineMs: 2000 })).toString()).toBe("ok");
      expect(sessions()).toBe(2);
      // a live connection is kept: the next call reuses it
      await h2.call("/x.Y/Z", Buffer.alloc(0), { deadlineMs: 2000 });
      expect(sessions()).toBe(2);
    } finally {
      h2.close();
      await new Promise((r) => server.close(r));
    }
  });
  it("calls made together before any connection share one", async () => {
    const { server, h2, sessions } = await okServer(() => true);
    try {
      const got = await Promise.all(
        Array.from({ length: 20 }, () => h2.call("/x.Y/Z", Buffer.alloc(0), { deadlineMs: 5000 })),
      );
      expect(got.map((b) => b.toString())).toEqual(Array(20).fill("ok"));
      expect(sessions()).toBe(1);
    } finally {
      h2.close();
      await new Promise((r) => server.close(r));
    }
  });
});

/** A plaintext HTTP/2 server answering every gRPC call "ok" (while `answers()`), counting its sessions; a client to it. */
async function okServer(answers: () => boolean) {
  const http2 = await import("node:http2");
  const { H2Unary } = await import("./h2-unary.js");
  let sessions = 0;
  const server = http2.createServer();
  server.on("session", () => sessions++);
  server.on("stream", (stream) => {
    if (!answers()) return;
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(frame(Buffer.from("ok")));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const h2 = new H2Unary({ address: `127.0.0.1:${port}`, insecure: true });
  return { server, h2, sessions: () => sessions };
}
