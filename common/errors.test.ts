import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { Code, failedPrecondition, isStoreUnavailable, notFound, ProtoctlError } from "./errors.js";
import { fromServiceError, toServiceError } from "./grpc.js";

describe("ProtoctlError over the wire", () => {
  it("round-trips code, reason, hint, subject, output and metadata through a status", () => {
    const err = failedPrecondition("base debian@2 is in use", {
      reason: "BASE_IN_USE",
      hint: "delete env web-1 first",
      subject: "base/debian@2",
      output: "line1\nline2",
      metadata: { users: "env/web-1" },
    });
    const wire = toServiceError(err);
    expect(wire.code).toBe(status.FAILED_PRECONDITION);
    const back = fromServiceError(wire);
    expect(back).toBeInstanceOf(ProtoctlError);
    expect(back.code).toBe(Code.FAILED_PRECONDITION);
    expect(back.message).toBe("base debian@2 is in use");
    expect(back.reason).toBe("BASE_IN_USE");
    expect(back.hint).toBe("delete env web-1 first");
    expect(back.subject).toBe("base/debian@2");
    expect(back.output).toBe("line1\nline2");
    expect(back.metadata).toEqual({ users: "env/web-1" });
  });

  it("maps a plain Error to INTERNAL and ENOSPC to RESOURCE_EXHAUSTED", () => {
    expect(ProtoctlError.from(new Error("boom")).code).toBe(Code.INTERNAL);
    const enospc = Object.assign(new Error("no space"), { code: "ENOSPC" });
    expect(ProtoctlError.from(enospc).code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  it("maps EDQUOT, which Node names only by number, to RESOURCE_EXHAUSTED: terminal, not retried", async () => {
    // what fs gives for a write past an env's --disk limit (libuv has no EDQUOT name)
    const edquot = Object.assign(
      new Error("Unknown system error -122: Unknown system error -122, open '/x'"),
      {
        code: "Unknown system error -122",
        errno: -122,
      },
    );
    const e = ProtoctlError.from(edquot);
    expect(e).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "NO_SPACE", retryable: false });
    expect(e.message).toBe("disk quota exceeded (EDQUOT), open '/x'");
  });

  it("keeps the status code when the detail trailer is absent or malformed", () => {
    const md = new Metadata();
    md.set("protoctl-error-bin", Buffer.from([0xff, 0xff, 0xff]));
    const e = fromServiceError({ code: status.NOT_FOUND, details: "nope", metadata: md });
    expect(e.code).toBe(Code.NOT_FOUND);
    expect(e.message).toBe("nope");
    const bare = fromServiceError({ code: status.UNAVAILABLE, details: "down", metadata: new Metadata() });
    expect(bare.code).toBe(Code.UNAVAILABLE);
    expect(bare.retryable).toBe(true);
  });

  it("marks retryable codes", () => {
    expect(notFound("x").retryable).toBe(true);
    expect(new ProtoctlError(Code.UNAVAILABLE, "x").retryable).toBe(true);
    expect(new ProtoctlError(Code.INTERNAL, "x").retryable).toBe(true);
    expect(new ProtoctlError(Code.RESOURCE_EXHAUSTED, "full").retryable).toBe(false);
    expect(new ProtoctlError(Code.FAILED_PRECONDITION, "x").retryable).toBe(false);
    expect(new ProtoctlError(Code.INVALID_ARGUMENT, "x").retryable).toBe(false);
  });
});

describe("errors from the cluster store", () => {
  it("turns an etcd client's transient error into UNAVAILABLE naming the store", async () => {
    const { GRPCUnavailableError, GRPCDeadlineExceededError, EtcdPermissionDeniedError } = await import(
      "etcd3"
    );
    const { BrokenCircuitError } = await import("cockatiel");
    for (const err of [
      new GRPCUnavailableError("14 UNAVAILABLE: connect ECONNREFUSED"),
      new BrokenCircuitError(),
    ]) {
      const e = ProtoctlError.from(err);
      expect(e.code).toBe(Code.UNAVAILABLE);
      expect(e.reason).toBe("STORE_UNAVAILABLE");
      expect(e.message).toMatch(/^the cluster store \(etcd\) is not answering/);
      expect(e.retryable).toBe(true);
    }
    // A refusal is not an outage.
    expect(ProtoctlError.from(new EtcdPermissionDeniedError("permission denied")).code).toBe(Code.INTERNAL);
    expect(isStoreUnavailable(new GRPCDeadlineExceededError("4 DEADLINE_EXCEEDED"))).toBe(true);
  });
});
