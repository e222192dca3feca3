import { describe, expect, it } from "vitest";
import { ControlServiceService } from "../../proto/gen/protoctl/v1/control.js";
import type { Principal } from "../users/directory.js";
import { allowed, CONTROL_AUTHZ, type Level, methodName, ruleOf } from "./authz.js";

const served = Object.values(ControlServiceService).map((d) => methodName(d.path));

const who = {
  admin: { kind: "user", name: "a", role: "admin" },
  operator: { kind: "user", name: "o", role: "operator" },
  viewer: { kind: "user", name: "v", role: "viewer" },
  node: { kind: "node", name: "n1", role: "node" },
  controller: { kind: "controller", name: "c1", role: "controller" },
  anonymous: { kind: "anonymous", name: "", role: "none" },
} satisfies Record<string, Principal>;

/** Who may call a method of each level: the table in docs/security.md (Identity, roles and audit). */
const MAY: Record<Level, Array<keyof typeof who>> = {
  open: ["admin", "operator", "viewer", "node", "controller", "anonymous"],
  node: ["node", "controller"],
  viewer: ["admin", "operator", "viewer", "controller"],
  operator: ["admin", "operator", "controller"],
  admin: ["admin", "controller"],
};

describe("ControlService authorization table", () => {
  it("has an entry for every method the service serves, and none for a method it does not", () => {
    const missing = served.filter((m) => !Object.hasOwn(CONTROL_AUTHZ, m));
    expect(missing).toEqual([]);
    expect(Object.keys(CONTROL_AUTHZ).filter((m) => !served.includes(m))).toEqual([]);
  });

  it.each(served)("%s: exactly the callers its level allows", (m) => {
    const rule = ruleOf(`/protoctl.v1.ControlService/${m}`)!;
    for (const [k, p] of Object.entries(who)) {
      expect([m, k, allowed(rule, p)]).toEqual([m, k, MAY[rule.level].includes(k as keyof typeof who)]);
    }
  });

  it("refuses a method missing from the table, whoever calls", () => {
    const rule = ruleOf("/protoctl.v1.ControlService/NotAMethod");
    expect(rule).toBeUndefined();
    for (const p of Object.values(who)) expect(allowed(rule, p)).toBe(false);
    // a property of Object.prototype is not an entry either
    expect(ruleOf("/protoctl.v1.ControlService/constructor")).toBeUndefined();
  });

  it("keeps what the roles promise: viewers only read, operators not nodes/users/bases", () => {
    const may = (p: Principal, m: string) => allowed(ruleOf(`/x/${m}`), p);
    for (const m of served) {
      if (CONTROL_AUTHZ[m]!.mutates && CONTROL_AUTHZ[m]!.level !== "open")
        expect(may(who.viewer, m)).toBe(false);
    }
    expect(may(who.viewer, "ListEnvs")).toBe(true);
    expect(may(who.viewer, "WatchEvents")).toBe(true);
    expect(may(who.viewer, "CreateEnv")).toBe(false);
    expect(may(who.operator, "CreateEnv")).toBe(true);
    expect(may(who.operator, "ApplyLab")).toBe(true);
    for (const m of [
      "AddUser",
      "RemoveUser",
      "ListUsers",
      "DeleteBase",
      "ImportBase",
      "CordonNode",
      "RemoveNode",
      "CreateJoinToken",
    ])
      expect([m, may(who.operator, m)]).toEqual([m, false]);
    expect(may(who.node, "Heartbeat")).toBe(true);
    expect(may(who.node, "CreateEnv")).toBe(false);
    expect(may(who.node, "ListUsers")).toBe(false);
    expect(may(who.operator, "Heartbeat")).toBe(false);
  });
});
