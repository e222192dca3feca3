import { describe, expect, it } from "vitest";
import { auditEvent, describe as describeCaller, objectOf } from "./auth-interceptor.js";

describe("audit records", () => {
  it("name the object a request is about, nested messages and oneofs included", () => {
    expect(objectOf("CreateEnv", { spec: { name: "web-1" }, wait: true })).toBe("env/web-1");
    expect(objectOf("DeleteEnv", { name: "web-1" })).toBe("env/web-1");
    expect(objectOf("ExecEnv", { input: { $case: "start", start: { env: "web-1", command: ["sh"] } } })).toBe(
      "env/web-1",
    );
    expect(objectOf("DeleteBase", { ref: { name: "debian", version: 3 } })).toBe("base/debian");
    expect(objectOf("AddUser", { name: "alice", role: "viewer" })).toBe("user/alice");
    expect(objectOf("CreateJoinToken", { node: "n2" })).toBe("node/n2");
    expect(objectOf("ApplyLab", { specYaml: "name: x" })).toBe("");
    expect(objectOf("CreateEnv", Buffer.from("name"))).toBe("");
  });

  it("say who called, what, and how it ended", () => {
    const op = { kind: "user", name: "alice", role: "operator" } as const;
    expect(describeCaller(op)).toBe("user alice (operator)");
    const ok = auditEvent(op, "CreateEnv", "env/web-1", 0, "", false);
    expect(ok).toMatchObject({
      kind: "audit.ok",
      subject: "env/web-1",
      message: "user alice (operator) CreateEnv env/web-1: OK",
      attributes: { caller: "alice", role: "operator", method: "CreateEnv", outcome: "ok", code: "OK" },
    });
    expect(auditEvent(op, "AddUser", "", 7, "no", false)).toMatchObject({
      kind: "audit.denied",
      subject: "method/AddUser",
      attributes: { code: "PERMISSION_DENIED" },
    });
    expect(auditEvent(op, "CreateEnv", "env/x", 6, "exists", false).kind).toBe("audit.failed");
    expect(auditEvent(op, "CreateEnv", "env/x", 0, "", true).message).toMatch(/^anonymous \(insecure\)/);
    const node = auditEvent({ kind: "node", name: "n1", role: "node" }, "JoinNode", "node/n1", 0, "", false);
    expect(node).toMatchObject({ node: "n1", message: "node n1 JoinNode node/n1: OK" });
  });
});
