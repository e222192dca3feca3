import { describe, expect, it } from "vitest";
import { codeName, splitPath } from "./grpc-interceptor.js";

describe("gRPC metric labels", () => {
  it("splits a method path into service and method", () => {
    expect(splitPath("/protoctl.v1.AgentService/CreateEnv")).toEqual(["AgentService", "CreateEnv"]);
  });
  it("names status codes as grpc-js does", () => {
    expect(codeName(0)).toBe("OK");
    expect(codeName(5)).toBe("NOT_FOUND");
    expect(codeName(99)).toBe("99");
  });
});
