import { createServer, type Http2Server, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "./errors.js";
import { H2Duplex, MessageReader, type StreamDefinition } from "./h2-duplex.js";
import { frame, H2Unary } from "./h2-unary.js";

const text: StreamDefinition<string, string> = {
  path: "/test.Echo/Chat",
  requestSerialize: (s) => Buffer.from(s),
  responseDeserialize: (b) => b.toString(),
};

describe("MessageReader", () => {
  it("splits messages across and within chunks", () => {
    const r = new MessageReader();
    const all = Buffer.concat([
      frame(Buffer.from("one")),
      frame(Buffer.from("")),
      frame(Buffer.from("three")),
    ]);
    expect(r.push(all.subarray(0, 6)).map(String)).toEqual([]);
    expect(r.push(all.subarray(6, 14)).map(String)).toEqual(["one", ""]);
    expect(r.pending).toBe(1);
    expect(r.push(all.subarray(14)).map(String)).toEqual(["three"]);
    expect(r.pending).toBe(0);
  });

  it("refuses compressed and oversized messages", () => {
    const compressed = frame(Buffer.from("x"));
    compressed.writeUInt8(1, 0);
    expect(() => new MessageReader().push(compressed)).toThrow(/compressed/);
    expect(() => new MessageReader(4).push(frame(Buffer.from("hello")))).toThrow(
      expect.objectContaining({ code: Code.RESOURCE_EXHAUSTED }),
    );
  });
});

describe("H2Duplex against an HTTP/2 gRPC peer", () => {
  let server: Http2Server;
  let address = "";
  beforeAll(async () => {
    server = createServer();
    server.on("stream", (stream: ServerHttp2Stream, headers) => {
      const path = headers[":path"];
      if (path === "/test.Echo/First") {
        // like ExecEnv: answers the first message and ends with OK without waiting for the client's end
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        const reader = new MessageReader();
        stream.on("data", (c: Buffer) => {
          const [m] = reader.push(c);
          if (m === undefined || stream.writableEnded) return;
          stream.write(frame(Buffer.from(`got ${m.toString()}`)));
          stream.end();
        });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        return;
      }
      if (path === "/test.Echo/Fail") {
        stream.respond(
          {
            ":status": 200,
            "content-type": "application/grpc",
            "grpc-status": "5",
            "grpc-message": "no%20such%20thing",
          },
          { endStream: true },
        );
        return;
      }
      // echoes every message upper-cased, then OK once the client ends its side
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      const reader = new MessageReader();
      stream.on("data", (c: Buffer) => {
        for (const m of reader.push(c)) stream.write(frame(Buffer.from(m.toString().toUpperCase())));
      });
      stream.on("end", () => stream.end());
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("writes requests, yields responses in order, ends on an OK status", async () => {
    const h2 = new H2Unary({ address, insecure: true });
    try {
      const call = new H2Duplex(await h2.request(text.path), text);
      call.write("hello");
      call.write("world");
      call.end();
      const got: string[] = [];
      for await (const m of call) got.push(m as string);
      expect(got).toEqual(["HELLO", "WORLD"]);
    } finally {
      h2.close();
    }
  });

  it("ends on the server's status while the client's side is still open (exec's pattern)", async () => {
    const h2 = new H2Unary({ address, insecure: true });
    try {
      const call = new H2Duplex(await h2.request("/test.Echo/First"), text);
      call.write("start");
      const got: string[] = [];
      // the client ends its side only after the iteration, as env exec does
      for await (const m of call) got.push(m as string);
      call.end();
      expect(got).toEqual(["got start"]);
    } finally {
      h2.close();
    }
  });

  it("a non-OK status ends the iteration with that code and message", async () => {
    const h2 = new H2Unary({ address, insecure: true });
    try {
      const call = new H2Duplex(await h2.request("/test.Echo/Fail"), text);
      call.end();
      const err = await (async () => {
        for await (const _ of call) {
          // nothing comes
        }
      })().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: Code.NOT_FOUND, message: expect.stringContaining("no such thing") });
    } finally {
      h2.close();
    }
  });

  it("a peer that cannot be reached is UNAVAILABLE", async () => {
    const h2 = new H2Unary({ address: "127.0.0.1:1", insecure: true });
    try {
      const call = new H2Duplex(await h2.request(text.path), text, { describeClose: () => h2.lastError });
      call.write("x");
      const err = await (async () => {
        for await (const _ of call) {
          // nothing comes
        }
      })().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: Code.UNAVAILABLE });
    } finally {
      h2.close();
    }
  });
});
