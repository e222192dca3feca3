import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import { checkPorts } from "./ports.js";

const free = () =>
  new Promise<{ port: number; close: () => Promise<void> }>((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      resolve({ port, close: () => new Promise((r) => srv.close(() => r())) });
    });
  });

const ports = (base: number) => ({
  etcdPort: base,
  etcdPeerPort: base + 1,
  controllerPort: base + 2,
  agentPort: base + 3,
  controllerMetricsPort: base + 4,
  agentMetricsPort: base + 5,
  consolePort: base + 6,
});

async function codeOf(p: Promise<unknown>): Promise<{ code: Code; reason?: string; message: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProtoctlError);
  const pe = err as ProtoctlError;
  return { code: pe.code, reason: pe.reason, message: pe.message };
}

describe("up's ports", () => {
  it("one port given for two daemons is refused before anything is checked or started", async () => {
    const o = { ...ports(40000), agentMetricsPort: 40000 };
    expect(await codeOf(checkPorts(o))).toEqual({
      code: Code.INVALID_ARGUMENT,
      reason: "PORT_TWICE",
      message: "port 40000 is given for both the etcd client and the agent metrics",
    });
  });

  it("a port something listens on is PORT_IN_USE, naming its daemon; free ports pass", async () => {
    const held = await Promise.all(Array.from({ length: 7 }, free));
    const [etcd, peer, controller, agent, cm, am, console] = held.map((h) => h.port) as number[];
    const o = {
      etcdPort: etcd!,
      etcdPeerPort: peer!,
      controllerPort: controller!,
      agentPort: agent!,
      controllerMetricsPort: cm!,
      agentMetricsPort: am!,
      consolePort: console!,
    };
    // all but the controller's are let go
    for (const h of held) if (h.port !== controller) await h.close();
    try {
      expect(await codeOf(checkPorts(o))).toEqual({
        code: Code.FAILED_PRECONDITION,
        reason: "PORT_IN_USE",
        message: `port ${controller} (controller) on 127.0.0.1 is already in use`,
      });
    } finally {
      await held.find((h) => h.port === controller)!.close();
    }
    await expect(checkPorts(o)).resolves.toBeUndefined();
  });
});
