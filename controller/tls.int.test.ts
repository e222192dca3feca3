/**
 * Authenticated transport end to end: a TLS controller (CA in etcd), an
 * admin credential written on first start, an agent joining with a token
 * carrying the CA fingerprint and serving mutual TLS that only the
 * controller may call. Clients without valid credentials are refused by
 * both.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { joinCluster } from "../agent/membership/index.js";
import { Code } from "../common/errors.js";
import { callUnary } from "../common/grpc.js";
import { silentLogger } from "../common/logger.js";
import {
  clientCredentials,
  controllerOnly,
  createCa,
  issue,
  readCredentialFile,
  serverCredentials,
} from "../common/tls.js";
import { AgentServiceClient } from "../proto/gen/protoctl/v1/agent.js";
import { EnvPhase, NodeState } from "../proto/gen/protoctl/v1/types.js";
import { startEtcd, type TestEtcd } from "../test/fixtures/etcd.js";
import { freePort } from "../test/fixtures/ports.js";
import { type FakeAgent, sealFakeBases, startFakeAgent } from "../test/harness/fake-agent.js";
import {
  call,
  client,
  eventually,
  REUSABLE,
  testConfig,
  testEnvSpec,
  uniquePrefix,
} from "../test/support/controller/cluster.js";
import { startController } from "./controller.js";
import { ClusterStore } from "./store/store.js";

let etcd: TestEtcd;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

it("mutual TLS: admin and controller identities pass, everyone else is refused", async () => {
  const prefix = uniquePrefix();
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-ctl-"));
  const ctl = await startController(
    testConfig(etcd.endpoint, prefix, { insecure: false, stateDir, tls: { caStore: "disk" } }),
    silentLogger(),
  );
  let agent: FakeAgent | undefined;
  const closers: { close(): void }[] = [];
  try {
    expect(ctl.adminCredentialFile).toBe(join(stateDir, "admin.json"));
    expect((await stat(ctl.adminCredentialFile!)).mode & 0o777).toBe(0o600);
    const cred = await readCredentialFile(ctl.adminCredentialFile!);
    const admin = client(ctl.address, clientCredentials(cred, { serverName: cred.serverName }));
    closers.push(admin);
    expect((await call(admin, "getVersion", {})).controller).toBe(ctl.id);
    expect((await call(admin, "listNodes", {})).nodes).toEqual([]);

    // no client certificate: the open methods work, the rest is refused
    const anon = client(
      ctl.address,
      clientCredentials({ caPem: cred.caPem }, { serverName: "protoctl-controller" }),
    );
    closers.push(anon);
    expect((await call(anon, "getVersion", {})).controller).toBe(ctl.id);
    await expect(call(anon, "listNodes", {})).rejects.toMatchObject({
      code: Code.UNAUTHENTICATED,
      reason: "NO_CREDENTIALS",
    });
    await expect(
      call(anon, "createJoinToken", { ttlSeconds: 60, labels: {}, ...REUSABLE }),
    ).rejects.toMatchObject({
      code: Code.UNAUTHENTICATED,
    });

    // a certificate from another CA, even claiming to be admin
    const rogueCa = await createCa("rogue");
    const rogueAdmin = await issue(rogueCa, { cn: "admin", role: "admin" });
    const rogue = client(
      ctl.address,
      clientCredentials({ caPem: cred.caPem, ...rogueAdmin }, { serverName: "protoctl-controller" }),
    );
    closers.push(rogue);
    await expect(call(rogue, "listEnvs", { node: "", group: "" })).rejects.toMatchObject({
      code: Code.UNAUTHENTICATED,
    });

    // plaintext to a TLS port
    const plain = client(ctl.address);
    closers.push(plain);
    await expect(call(plain, "getVersion", {}, 3000)).rejects.toMatchObject({ code: Code.UNAVAILABLE });

    // an agent joins with a token that names the CA, gets a node certificate, serves mTLS
    const { token } = await call(admin, "createJoinToken", {
      ttlSeconds: 60,
      labels: { zone: "a" },
      ...REUSABLE,
    });
    expect(token).toMatch(/^protoctl1\.[0-9a-f]{64}\./);
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const tls = await joinCluster({
      controller: ctl.address,
      token,
      name: "n1",
      address,
      log: silentLogger(),
    });
    expect(tls?.certPem).toContain("BEGIN CERTIFICATE");
    await sealFakeBases({ endpoint: etcd.endpoint, prefix }, [{ name: "n1" }]);
    agent = await startFakeAgent({
      name: "n1",
      port,
      credentials: serverCredentials(tls, { clientAuth: "require" }),
      interceptors: [controllerOnly(tls!.caPem)],
    });
    await agent.join(ctl.address, token, { credentials: { tls } });
    await eventually(
      async () => (await call(admin, "getNode", { name: "n1" })).state === NodeState.NODE_STATE_READY,
    );
    expect((await call(admin, "getNode", { name: "n1" })).labels).toEqual({ zone: "a" });

    // the controller reaches the agent over mTLS
    const env = await call(admin, "createEnv", {
      spec: testEnvSpec("secure"),
      wait: true,
    });
    expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);

    // the agent refuses an admin (not the controller) and a client without a certificate
    const asAdmin = new AgentServiceClient(address, clientCredentials(cred, { serverName: "n1" }));
    closers.push(asAdmin);
    await expect(callUnary(asAdmin.listEnvs.bind(asAdmin), {}, { deadlineMs: 3000 })).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
    });
    const noCert = new AgentServiceClient(
      address,
      clientCredentials({ caPem: cred.caPem }, { serverName: "n1" }),
    );
    closers.push(noCert);
    await expect(callUnary(noCert.listEnvs.bind(noCert), {}, { deadlineMs: 3000 })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
    });

    // a node certificate cannot call admin methods
    const asNode = client(ctl.address, clientCredentials(tls, { serverName: "protoctl-controller" }));
    closers.push(asNode);
    await expect(call(asNode, "listEnvs", { node: "", group: "" })).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
    });
  } finally {
    for (const c of closers) c.close();
    await agent?.stop();
    await ctl.stop();
    await rm(stateDir, { recursive: true, force: true });
    const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix });
    await store.purge();
    await store.close();
  }
});
