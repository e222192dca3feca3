import { expect, it } from "vitest";
import { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { parseLabSpec } from "../labs/parse-spec.js";
import { withExpiry } from "./env-api.js";

const spec = (over: Partial<EnvSpec> = {}) =>
  EnvSpec.fromPartial({ name: "e", base: { name: "b", version: 0 }, ...over });

it("expiry comes from the request's ttl, else an absolute time in the spec, else the cluster default", () => {
  expect(withExpiry(spec(), 5000, 0, 1000).expiresMs).toBe(6000);
  expect(withExpiry(spec({ expiresMs: 42 }), 5000, 9000, 1000).expiresMs).toBe(6000);
  expect(withExpiry(spec({ expiresMs: 42 }), 0, 9000, 1000).expiresMs).toBe(42);
  expect(withExpiry(spec(), 0, 9000, 1000).expiresMs).toBe(10_000);
  expect(withExpiry(spec(), 0, 0, 1000).expiresMs).toBeUndefined();
  expect(() => withExpiry(spec(), 11 * 365 * 86_400_000, 0)).toThrow(/ttl/);
  expect(() => withExpiry(spec(), -1, 0)).toThrow(/ttl/);
});

it("a lab file's ttl is a duration; junk is reported at its line", () => {
  const base = "name: l\nmachines:\n  - name: m\n    base: busybox\n";
  const ok = parseLabSpec(`${base}ttl: 2h\n`);
  expect(ok.ok && ok.spec.ttlSeconds).toBe(7200);
  const none = parseLabSpec(base);
  expect(none.ok && none.spec.ttlSeconds).toBeUndefined();
  const bad = parseLabSpec(`${base}ttl: soon\n`);
  expect(bad.ok).toBe(false);
  if (!bad.ok) expect(bad.issues.some((i) => i.path === "ttl" && i.line === 5)).toBe(true);
});
