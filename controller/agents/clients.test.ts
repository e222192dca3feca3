import { describe, expect, it } from "vitest";
import { createCa, issue, type TlsMaterial } from "../../common/tls.js";
import { AgentServiceService } from "../../proto/gen/protoctl/v1/agent.js";
import { Env } from "../../proto/gen/protoctl/v1/types.js";
import { type H2UnaryServer, serveUnary } from "../../test/harness/h2-unary-server.js";
import { AgentClients } from "./clients.js";

describe("agent clients over mTLS", () => {
  it("dial every agent with one TLS context per material, and still check each agent's certificate", async () => {
    const ca = await createCa();
    const other = await createCa("other");
    const ctl = await issue(ca, { cn: "c1", role: "controller" });
    const servers: H2UnaryServer[] = [];
    const agent = async (cert: { certPem: string; keyPem: string }, caPem = ca.certPem) => {
      const s = await serveUnary(
        AgentServiceService as never,
        {
          startEnv: (call: { request: { name: string } }, cb: (e: null, r: unknown) => void) =>
            cb(null, Env.fromPartial({ spec: { name: call.request.name } })),
        },
        "127.0.0.1",
        0,
        { caPem, ...cert, allow: (peer) => peer?.role === "controller" },
      );
      servers.push(s);
      return `127.0.0.1:${s.port}`;
    };
    const n1 = await agent(await issue(ca, { cn: "n1", role: "node", sans: ["127.0.0.1"] }));
    const n2 = await agent(await issue(ca, { cn: "n2", role: "node", sans: ["127.0.0.1"] }));
    // right CA, wrong role: a controller's certificate where an agent's is due
    const imposter = await agent(await issue(ca, { cn: "c2", role: "controller", sans: ["127.0.0.1"] }));
    // a node certificate of another cluster's CA
    const foreign = await agent(
      await issue(other, { cn: "n3", role: "node", sans: ["127.0.0.1"] }),
      other.certPem,
    );
    let material: TlsMaterial = { caPem: ca.certPem, ...ctl };
    const clients = new AgentClients(() => material);
    try {
      const first = clients.secureContext(material);
      const call = (node: string, address: string) =>
        clients.unary(node, address, AgentServiceService.startEnv, { name: node }, { deadlineMs: 5000 });
      expect((await call("n1", n1)).spec?.name).toBe("n1");
      expect((await call("n2", n2)).spec?.name).toBe("n2");
      expect(clients.secureContext(material)).toBe(first);
      await expect(call("c2", imposter)).rejects.toMatchObject({ code: 14 });
      await expect(call("n3", foreign)).rejects.toMatchObject({ code: 14 });
      // new material (a renewed certificate): a new context, and agents dialled afresh use it
      material = { caPem: ca.certPem, ...(await issue(ca, { cn: "c1", role: "controller" })) };
      expect(clients.secureContext(material)).not.toBe(first);
      clients.drop("n1");
      expect((await call("n1", n1)).spec?.name).toBe("n1");
    } finally {
      clients.close();
      await Promise.all(servers.map((s) => s.close()));
    }
  });
});
