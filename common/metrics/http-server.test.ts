import { Counter, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { startMetricsServer } from "./http-server.js";

describe("metrics HTTP server", () => {
  it("serves the registry at /metrics on loopback, 404 elsewhere", async () => {
    const registry = new Registry();
    const c = new Counter({ name: "protoctl_test_things_total", help: "things", registers: [registry] });
    c.inc(3);
    const s = await startMetricsServer({ listen: "127.0.0.1:0", registry });
    try {
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const r = await fetch(s.url);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toContain("text/plain");
      expect(await r.text()).toContain("protoctl_test_things_total 3");
      expect((await fetch(s.url.replace("/metrics", "/other"))).status).toBe(404);
    } finally {
      await s.close();
    }
  });

  it("refuses plain HTTP on a non-loopback address, before listening", async () => {
    await expect(startMetricsServer({ listen: "0.0.0.0:0", registry: new Registry() })).rejects.toThrow(
      /not a loopback address and TLS is off/,
    );
  });
});
