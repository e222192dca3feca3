import { X509Certificate } from "node:crypto";
import { describe, expect, it, vi } from "vitest";
import { createCa, fingerprint, issue, peerIdentity } from "./tls.js";

describe("peer identity of a call", () => {
  it("a call's peer certificate verified once is taken from memory, per CA and within its validity", async () => {
    const ca = await createCa();
    const other = await createCa("other");
    const { certPem } = await issue(ca, { cn: "alice", role: "admin" });
    const raw = new X509Certificate(certPem).raw;
    const call = { getAuthContext: () => ({ sslPeerCertificate: { raw: Buffer.from(raw) } }) };
    const first = peerIdentity(call, ca.certPem);
    expect(first).toMatchObject({ cn: "alice", role: "admin", fingerprint: fingerprint(certPem) });
    expect(peerIdentity(call, ca.certPem)).toEqual(first);
    // remembered for its CA only
    expect(peerIdentity(call, other.certPem)).toBeUndefined();
    vi.useFakeTimers();
    try {
      vi.setSystemTime(Date.now() + 3 * 365 * 86400_000);
      expect(peerIdentity(call, ca.certPem)).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
    expect(peerIdentity(call, ca.certPem)).toEqual(first);
    expect(peerIdentity({ getAuthContext: () => ({}) }, ca.certPem)).toBeUndefined();
  });
});

describe("peer identity over a real mTLS connection", () => {
  it("reads and verifies a connection's certificate once, keeps each connection's own, and still refuses", async () => {
    const { TLSSocket } = await import("node:tls");
    const { Server } = await import("@grpc/grpc-js");
    const { AgentServiceService } = await import("../proto/gen/protoctl/v1/agent.js");
    const { Env } = await import("../proto/gen/protoctl/v1/types.js");
    const { H2Unary } = await import("./h2-unary.js");
    const { controllerOnly, serverCredentials } = await import("./tls.js");
    const ca = await createCa();
    const node = await issue(ca, { cn: "n1", role: "node", sans: ["127.0.0.1"] });
    const ctl = await issue(ca, { cn: "c1", role: "controller" });
    const admin = await issue(ca, { cn: "alice", role: "admin" });
    const { ServerInterceptingCall } = await import("@grpc/grpc-js");
    // another interceptor first, as in the daemons (metrics): the call reaches ours wrapped
    const passThrough = (_d: unknown, call: never) => new ServerInterceptingCall(call);
    const server = new Server({ interceptors: [passThrough as never, controllerOnly(ca.certPem)] });
    server.addService(AgentServiceService, {
      startEnv: (call: { request: { name: string } }, cb: (e: unknown, r?: unknown) => void) =>
        cb(null, Env.fromPartial({ spec: { name: call.request.name } })),
    } as never);
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync("127.0.0.1:0", serverCredentials({ caPem: ca.certPem, ...node }), (e, p) =>
        e ? rej(e) : res(p),
      ),
    );
    const client = (c: { certPem: string; keyPem: string }) =>
      new H2Unary({
        address: `127.0.0.1:${port}`,
        insecure: false,
        ca: Buffer.from(ca.certPem),
        cert: Buffer.from(c.certPem),
        key: Buffer.from(c.keyPem),
        serverName: "127.0.0.1",
      });
    const asCtl = client(ctl);
    const asAdmin = client(admin);
    const reads = vi.spyOn(TLSSocket.prototype, "getPeerCertificate");
    try {
      for (let i = 0; i < 5; i++) {
        const env = await asCtl.unary(AgentServiceService.startEnv, { name: `e${i}` }, { deadlineMs: 5000 });
        expect(env.spec?.name).toBe(`e${i}`);
      }
      const serverReads = () =>
        reads.mock.contexts.filter(
          (s) => (s as { _tlsOptions?: { isServer?: boolean } })._tlsOptions?.isServer,
        );
      // five calls on one connection: its certificate was read once
      expect(serverReads()).toHaveLength(1);
      // another connection, another certificate: its own verdict, not the first one's
      for (let i = 0; i < 2; i++) {
        await expect(
          asAdmin.unary(AgentServiceService.startEnv, { name: "x" }, { deadlineMs: 5000 }),
        ).rejects.toMatchObject({ code: 7 });
      }
      expect(serverReads()).toHaveLength(2);
      await asCtl.unary(AgentServiceService.startEnv, { name: "again" }, { deadlineMs: 5000 });
      expect(serverReads()).toHaveLength(2);
    } finally {
      reads.mockRestore();
      asCtl.close();
      asAdmin.close();
      server.forceShutdown();
    }
  });
});
