/**
 * The lean fake agent (h2-unary-server.ts) speaks gRPC: grpc-js and the
 * controller's HTTP/2 unary client both get answers and our error details.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { callUnary } from "../../common/grpc.js";
import { H2Unary } from "../../common/h2-unary.js";
import { clientCredentials } from "../../common/tls.js";
import { AgentServiceClient, AgentServiceService } from "../../proto/gen/protoctl/v1/agent.js";
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import { testEnvSpec } from "../support/controller/cluster.js";
import { FakeAgent } from "./fake-agent.js";

let agent: FakeAgent;
beforeAll(async () => {
  agent = await new FakeAgent({ name: "lean-1", bases: ["debian@1"], lean: true }).start();
});
afterAll(async () => {
  await agent.stop();
});

it("answers the controller's HTTP/2 client and grpc-js alike, errors with their detail", async () => {
  const h2 = new H2Unary({ address: agent.address, insecure: true });
  const grpc = new AgentServiceClient(agent.address, clientCredentials(undefined));
  try {
    const spec = testEnvSpec("e1", { base: { name: "debian", version: 1 } });
    const env = await h2.unary(AgentServiceService.createEnv, { spec, generation: 1 }, { deadlineMs: 5000 });
    expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    expect(agent.envs.has("e1")).toBe(true);
    const got = await callUnary(grpc.getEnv.bind(grpc), { name: "e1" });
    expect(got.spec?.name).toBe("e1");
    const missing = testEnvSpec("e2", { base: { name: "nope", version: 3 } });
    await expect(
      h2.unary(AgentServiceService.createEnv, { spec: missing, generation: 1 }),
    ).rejects.toMatchObject({
      code: 9,
      reason: "BASE_NOT_FOUND",
    });
    // streams are not served by the lean server
    const events: unknown[] = [];
    const err = await new Promise<{ code?: number }>((resolve) => {
      const s = grpc.logs({ name: "e1", follow: false, tailLines: 0 } as never);
      s.on("data", (d) => events.push(d));
      s.on("error", resolve);
      s.on("end", () => resolve({}));
    });
    expect(err.code).toBe(12);
  } finally {
    h2.close();
    grpc.close();
  }
});

it("over mTLS answers a controller's certificate only, as controllerOnly() does on a real agent", async () => {
  const { createCa, issue } = await import("../../common/tls.js");
  const ca = await createCa();
  const node = await issue(ca, { cn: "lean-2", role: "node", sans: ["127.0.0.1"] });
  const secure = await new FakeAgent({
    name: "lean-2",
    bases: ["debian@1"],
    lean: true,
    leanTls: { caPem: ca.certPem, ...node, allow: (peer) => peer?.role === "controller" },
  }).start();
  const dial = (c?: { certPem: string; keyPem: string }) =>
    new H2Unary({
      address: secure.address,
      insecure: false,
      ca: Buffer.from(ca.certPem),
      ...(c ? { cert: Buffer.from(c.certPem), key: Buffer.from(c.keyPem) } : {}),
      serverName: "127.0.0.1",
    });
  const asCtl = dial(await issue(ca, { cn: "c1", role: "controller" }));
  const asAdmin = dial(await issue(ca, { cn: "alice", role: "admin" }));
  const anonymous = dial();
  try {
    const spec = testEnvSpec("s1", { base: { name: "debian", version: 1 } });
    for (const gen of [1, 1]) {
      const env = await asCtl.unary(
        AgentServiceService.createEnv,
        { spec, generation: gen },
        { deadlineMs: 5000 },
      );
      expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    }
    const other = testEnvSpec("s2", { base: { name: "debian", version: 1 } });
    await expect(
      asAdmin.unary(AgentServiceService.createEnv, { spec: other, generation: 1 }, { deadlineMs: 5000 }),
    ).rejects.toMatchObject({ code: 7 });
    // no client certificate: the handshake itself is refused
    await expect(
      anonymous.unary(AgentServiceService.createEnv, { spec: other, generation: 1 }, { deadlineMs: 5000 }),
    ).rejects.toMatchObject({ code: 14 });
    expect([...secure.envs.keys()]).toEqual(["s1"]);
  } finally {
    asCtl.close();
    asAdmin.close();
    anonymous.close();
    await secure.stop();
  }
});
