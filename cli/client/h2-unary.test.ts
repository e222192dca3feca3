import { describe, expect, it } from "vitest";
import { ERROR_DETAIL_KEY } from "../../common/errors.js";
import { ErrorDetail } from "../../proto/gen/protoctl/v1/types.js";
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
