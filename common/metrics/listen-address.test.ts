import { describe, expect, it } from "vitest";
import { isLoopbackHost, splitHostPort } from "./listen-address.js";

describe("listen addresses", () => {
  it("splits host:port, IPv6 in brackets too", () => {
    expect(splitHostPort("127.0.0.1:9464")).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(splitHostPort("[::1]:0")).toEqual({ host: "::1", port: 0 });
  });
  it("refuses what is not host:port", () => {
    for (const bad of ["9464", ":9464", "host:", "host:99999", "host:x"])
      expect(() => splitHostPort(bad), bad).toThrow(/host:port/);
  });
  it("knows loopback from the rest", () => {
    expect(isLoopbackHost("127.0.0.1")).toBe(true);
    expect(isLoopbackHost("127.8.0.1")).toBe(true);
    expect(isLoopbackHost("::1")).toBe(true);
    expect(isLoopbackHost("localhost")).toBe(true);
    expect(isLoopbackHost("0.0.0.0")).toBe(false);
    expect(isLoopbackHost("10.0.0.1")).toBe(false);
    expect(isLoopbackHost("::")).toBe(false);
  });
});
