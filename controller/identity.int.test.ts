/**
 * Identity and authorization on a real etcd with TLS controllers: join
 * tokens (single use, expiry, another cluster's, a taken name), the role in
 * every certificate (a node cannot call user APIs, a node certificate
 * cannot pass for the controller), users with roles, revocation seen by
 * every replica, and the audit trail in the event log.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../common/errors.js";
import { silentLogger } from "../common/logger.js";
import {
  clientCredentials,
  createCsr,
  fingerprint,
  generateKeyPem,
  readCredentialFile,
  type TlsMaterial,
} from "../common/tls.js";
import { type ControlServiceClient, NodeHeartbeat } from "../proto/gen/protoctl/v1/control.js";
import { startEtcd, type TestEtcd } from "../test/fixtures/etcd.js";
import { sealFakeBases } from "../test/harness/fake-agent.js";
import {
  call,
  client,
  eventually,
  REUSABLE,
  testConfig,
  testEnvSpec,
  uniquePrefix,
} from "../test/support/controller/cluster.js";
import { type RunningController, startController } from "./controller.js";
import { formatToken } from "./membership/tokens.js";
import { ClusterStore } from "./store/store.js";

const TOKEN = { ttlSeconds: 60, labels: {}, uses: 0, reusable: false, node: "", replace: false };
const SERVER = { serverName: "protoctl-controller", serverRole: "controller" } as const;

let etcd: TestEtcd;
const prefix = uniquePrefix();
const otherPrefix = uniquePrefix();
const dirs: string[] = [];
const ctls: RunningController[] = [];
const clients: ControlServiceClient[] = [];
let caPem = "";
let admin: ControlServiceClient;
let adminB: ControlServiceClient;
let anon: ControlServiceClient;

async function tlsController(p: string, stateDir: string, id: string): Promise<RunningController> {
  const c = await startController(
    // two replicas share the CA through etcd: allowed over this plaintext test etcd only with etcd.insecure
    testConfig(etcd.endpoint, p, {
      id,
      insecure: false,
      stateDir,
      etcd: { endpoints: [etcd.endpoint], prefix: p, insecure: true },
    }),
    silentLogger(),
  );
  ctls.push(c);
  return c;
}

function open(address: string, m: TlsMaterial): ControlServiceClient {
  const c = client(address, clientCredentials(m, SERVER));
  clients.push(c);
  return c;
}

/** A JoinNode as an agent without a certificate makes it: key, CSR, token. */
async function joinAs(c: ControlServiceClient, token: string, name: string) {
  const keyPem = generateKeyPem();
  const csrPem = await createCsr(keyPem, name, "node");
  const res = await call(c, "joinNode", { token, name, address: "127.0.0.1:9", csrPem, labels: {} });
  return { caPem: res.caPem, certPem: res.certPem, keyPem };
}

async function addUser(c: ControlServiceClient, name: string, role: string): Promise<TlsMaterial> {
  const keyPem = generateKeyPem();
  const csrPem = await createCsr(keyPem, name, "user");
  const res = await call(c, "addUser", { name, role, days: 0, csrPem });
  return { caPem: res.caPem, certPem: res.certPem, keyPem };
}

beforeAll(async () => {
  etcd = await startEtcd();
  const dir = await mkdtemp(join(tmpdir(), "protoctl-identity-"));
  dirs.push(dir);
  // two replicas of one cluster (one state dir, so one CA whichever store it uses)
  // the envs created below name debian, which must have a seal for a create to be taken
  await sealFakeBases({ endpoint: etcd.endpoint, prefix }, [{ name: "n1" }]);
  const a = await tlsController(prefix, dir, "ctl-a");
  const b = await tlsController(prefix, dir, "ctl-b");
  const cred = await readCredentialFile(a.adminCredentialFile!);
  caPem = cred.caPem;
  admin = open(a.address, cred);
  adminB = open(b.address, cred);
  anon = open(a.address, { caPem });
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const c of ctls) await c.stop().catch(() => undefined);
  for (const p of [prefix, otherPrefix]) {
    const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix: p });
    await store.purge();
    await store.close();
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await etcd?.stop();
});

describe("join tokens", () => {
  it("a single-use token admits exactly one of two concurrent joins, and is refused when reused", async () => {
    const { token, uses } = await call(admin, "createJoinToken", TOKEN);
    expect(uses).toBe(1);
    const results = await Promise.allSettled([joinAs(anon, token, "race-a"), joinAs(anon, token, "race-b")]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    expect(won).toHaveLength(1);
    expect(lost[0]!.reason).toMatchObject({ code: Code.PERMISSION_DENIED, reason: "TOKEN_USED" });
    await expect(joinAs(anon, token, "race-c")).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      reason: "TOKEN_USED",
    });
    const names = (await call(admin, "listNodes", {})).nodes.map((n) => n.name);
    expect(names.filter((n) => n.startsWith("race-"))).toHaveLength(1);
  });

  it("--uses N admits N joins", async () => {
    const { token } = await call(admin, "createJoinToken", { ...TOKEN, uses: 2 });
    await joinAs(anon, token, "uses-1");
    await joinAs(anon, token, "uses-2");
    await expect(joinAs(anon, token, "uses-3")).rejects.toMatchObject({ reason: "TOKEN_USED" });
  });

  it("a multi-use token admits a fleet joining at once, through both replicas, and no more", async () => {
    const n = 40;
    const { token } = await call(admin, "createJoinToken", { ...TOKEN, uses: n });
    const anonB = open(ctls[1]!.address, { caPem });
    const joins = Array.from({ length: n }, (_, i) => joinAs(i % 2 ? anonB : anon, token, `fleet-${i}`));
    const results = await Promise.allSettled(joins);
    const lost = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    expect(lost.map((r) => String(r.reason))).toEqual([]);
    await expect(joinAs(anon, token, "fleet-extra")).rejects.toMatchObject({ reason: "TOKEN_USED" });
    const names = (await call(admin, "listNodes", {})).nodes.map((x) => x.name);
    expect(names.filter((x) => x.startsWith("fleet-"))).toHaveLength(n);
  }, 60_000);

  it("an expired token is refused", async () => {
    const { token } = await call(admin, "createJoinToken", { ...TOKEN, ttlSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    await expect(joinAs(anon, token, "late")).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      reason: "TOKEN_INVALID",
    });
  });

  it("a token from another cluster (another CA) is refused", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-identity-other-"));
    dirs.push(dir);
    const other = await tlsController(otherPrefix, dir, "other");
    const otherCred = await readCredentialFile(other.adminCredentialFile!);
    expect(fingerprint(otherCred.caPem)).not.toBe(fingerprint(caPem));
    const otherAdmin = open(other.address, otherCred);
    const { token } = await call(otherAdmin, "createJoinToken", TOKEN);
    await expect(joinAs(anon, token, "stranger")).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      reason: "TOKEN_OTHER_CLUSTER",
    });
    // nor does a token without any CA fingerprint pass on a TLS cluster
    await expect(
      joinAs(anon, formatToken(randomBytes(32).toString("base64url")), "stranger"),
    ).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      reason: "TOKEN_OTHER_CLUSTER",
    });
    await other.stop();
    ctls.splice(ctls.indexOf(other), 1);
  });

  it("a join under an existing node's name is refused until an admin replaces or removes it", async () => {
    const { token } = await call(admin, "createJoinToken", { ...TOKEN, ...REUSABLE, ttlSeconds: 60 });
    const first = await joinAs(anon, token, "taken");
    await expect(joinAs(anon, token, "taken")).rejects.toMatchObject({
      code: Code.ALREADY_EXISTS,
      reason: "NODE_NAME_TAKEN",
    });
    // a token bound to another name does not help
    const bound = await call(admin, "createJoinToken", { ...TOKEN, node: "other-name" });
    await expect(joinAs(anon, bound.token, "taken")).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      reason: "TOKEN_WRONG_NODE",
    });
    // the node itself, by its certificate, re-joins without a token and keeps its certificate
    const self = open(ctls[0]!.address, first);
    const keyCsr = await createCsr(first.keyPem, "taken", "node");
    const again = await call(self, "joinNode", {
      token: "",
      name: "taken",
      address: "127.0.0.1:9",
      csrPem: keyCsr,
      labels: {},
    });
    expect(again.certPem).toBe(first.certPem);
    // an admin's --replace token hands the name to a new machine and revokes the old certificate
    const repl = await call(admin, "createJoinToken", { ...TOKEN, node: "taken", replace: true });
    const second = await joinAs(anon, repl.token, "taken");
    expect(second.certPem).not.toBe(first.certPem);
    await expect(call(self, "listNodes", {})).rejects.toMatchObject({
      code: Code.UNAUTHENTICATED,
      reason: "CERT_REVOKED",
    });
    // node rm frees the name (the node is NotReady: it never heartbeated)
    await call(admin, "removeNode", { name: "taken" });
    await joinAs(anon, token, "taken");
  });
});

describe("certificate roles", () => {
  it("a node certificate cannot call user APIs", async () => {
    const { token } = await call(admin, "createJoinToken", TOKEN);
    const node = open(ctls[0]!.address, await joinAs(anon, token, "plain-node"));
    for (const [m, req] of [
      ["createEnv", { spec: testEnvSpec("from-node"), wait: false }],
      ["listUsers", {}],
      ["listEnvs", { node: "", group: "" }],
      ["createJoinToken", TOKEN],
    ] as const) {
      await expect(call(node, m as "listUsers", req as never)).rejects.toMatchObject({
        code: Code.PERMISSION_DENIED,
        reason: "FORBIDDEN",
      });
    }
  });

  it("a node speaks only for itself: a heartbeat for another name is refused", async () => {
    const { token } = await call(admin, "createJoinToken", TOKEN);
    const me = open(ctls[0]!.address, await joinAs(anon, token, "hb-self"));
    const other = await call(admin, "createJoinToken", TOKEN);
    await joinAs(anon, other.token, "hb-other");
    const heartbeatAs = (node: string) =>
      new Promise<unknown>((resolve) => {
        const s = me.heartbeat();
        s.on("data", () => {
          s.cancel();
          resolve("acked");
        });
        s.on("error", (e) => resolve(ProtoctlError.from(e)));
        s.write(NodeHeartbeat.fromPartial({ node, address: "127.0.0.1:9", sentMs: Date.now() }));
      });
    expect(await heartbeatAs("hb-other")).toMatchObject({
      code: Code.PERMISSION_DENIED,
      reason: "FORBIDDEN",
    });
    expect(await heartbeatAs("hb-self")).toBe("acked");
  });

  it("a node certificate cannot pass for the controller: clients check the server's role", async () => {
    const { token } = await call(admin, "createJoinToken", TOKEN);
    const node = await joinAs(anon, token, "impostor");
    // a TLS server presenting the node's certificate, on loopback
    const { Server } = await import("@grpc/grpc-js");
    const { serverCredentials } = await import("../common/tls.js");
    const { ControlServiceService } = await import("../proto/gen/protoctl/v1/control.js");
    const srv = new Server();
    srv.addService(ControlServiceService, {} as never);
    const port = await new Promise<number>((res, rej) =>
      srv.bindAsync("127.0.0.1:0", serverCredentials(node, { clientAuth: "request" }), (e, p) =>
        e ? rej(e) : res(p),
      ),
    );
    try {
      const cred = await readCredentialFile(ctls[0]!.adminCredentialFile!);
      const strict = client(
        `127.0.0.1:${port}`,
        clientCredentials(cred, { serverName: "impostor", serverRole: "controller" }),
      );
      clients.push(strict);
      await expect(call(strict, "getVersion", {}, 5000)).rejects.toMatchObject({ code: Code.UNAVAILABLE });
      // the same dial without the role check reaches the server (which implements nothing)
      const lax = client(`127.0.0.1:${port}`, clientCredentials(cred, { serverName: "impostor" }));
      clients.push(lax);
      await expect(call(lax, "getVersion", {}, 5000)).rejects.toMatchObject({ code: Code.UNIMPLEMENTED });
    } finally {
      srv.forceShutdown();
    }
  });
});

describe("users and roles", () => {
  it("a viewer can list but not create; an operator manages envs but cannot add users or delete bases", async () => {
    const viewer = open(ctls[0]!.address, await addUser(admin, "vic", "viewer"));
    const operator = open(ctls[0]!.address, await addUser(admin, "olga", "operator"));
    expect((await call(viewer, "listEnvs", { node: "", group: "" })).envs).toBeDefined();
    await expect(
      call(viewer, "createEnv", { spec: testEnvSpec("by-viewer"), wait: false }),
    ).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, reason: "FORBIDDEN" });
    const env = await call(operator, "createEnv", { spec: testEnvSpec("by-operator"), wait: false });
    expect(env.spec?.name).toBe("by-operator");
    await expect(addUser(operator, "mallory", "admin")).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
    });
    await expect(call(operator, "deleteBase", { ref: { name: "debian", version: 0 } })).rejects.toMatchObject(
      {
        code: Code.PERMISSION_DENIED,
      },
    );
    await expect(call(operator, "listUsers", {})).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
    const users = (await call(admin, "listUsers", {})).users;
    expect(users.map((u) => [u.name, u.role]).sort()).toEqual([
      ["olga", "operator"],
      ["vic", "viewer"],
    ]);
    await call(operator, "deleteEnv", { name: "by-operator", wait: false });
  });

  it("a removed user is refused by every controller replica", async () => {
    const cred = await addUser(adminB, "gone", "viewer"); // added on replica B
    const onA = open(ctls[0]!.address, cred);
    const onB = open(ctls[1]!.address, cred);
    await call(onA, "listNodes", {});
    await call(onB, "listNodes", {});
    await call(admin, "removeUser", { name: "gone" }); // removed on replica A
    await expect(call(onA, "listNodes", {})).rejects.toMatchObject({
      code: Code.UNAUTHENTICATED,
      reason: "CERT_REVOKED",
    });
    // replica B learns it from its watch on revoked/ (milliseconds); bounded here, never absolute
    const t0 = Date.now();
    await eventually(
      () =>
        call(onB, "listNodes", {}).then(
          () => false,
          (e: { code?: number }) => e.code === Code.UNAUTHENTICATED,
        ),
      5000,
      10,
    );
    console.log(`replica B refused the removed user ${Date.now() - t0} ms after the removal returned`);
    await expect(call(onB, "listNodes", {})).rejects.toMatchObject({ code: Code.UNAUTHENTICATED });
    // and the same name added again gets a new certificate; the old one stays refused
    const fresh = open(ctls[1]!.address, await addUser(admin, "gone", "viewer"));
    await call(fresh, "listNodes", {});
    await expect(call(onB, "listNodes", {})).rejects.toMatchObject({ code: Code.UNAUTHENTICATED });
  });

  it("events show who called each mutating method and how it ended", async () => {
    const op = open(ctls[0]!.address, await addUser(admin, "audra", "operator"));
    const viewer = open(ctls[0]!.address, await addUser(admin, "vera", "viewer"));
    await call(op, "createEnv", { spec: testEnvSpec("audited"), wait: false });
    await expect(
      call(viewer, "createEnv", { spec: testEnvSpec("not-allowed"), wait: false }),
    ).rejects.toThrow();
    const store = new ClusterStore({ endpoints: [etcd.endpoint], prefix });
    try {
      const audit = await eventually(async () => {
        const evs = (await store.events.list()).events.filter((e) => e.kind.startsWith("audit."));
        const ok = evs.find((e) => e.attributes.caller === "audra" && e.attributes.method === "CreateEnv");
        const denied = evs.find((e) => e.attributes.caller === "vera" && e.attributes.method === "CreateEnv");
        return ok && denied ? { ok, denied } : undefined;
      }, 5000);
      expect(audit.ok).toMatchObject({
        kind: "audit.ok",
        subject: "env/audited",
        attributes: { role: "operator", callerKind: "user", outcome: "ok", code: "OK" },
      });
      expect(audit.ok.message).toContain("user audra (operator) CreateEnv env/audited: OK");
      expect(audit.denied).toMatchObject({
        kind: "audit.denied",
        // refused before its request is read: the method names it
        subject: "method/CreateEnv",
        attributes: { role: "viewer", outcome: "denied", code: "PERMISSION_DENIED" },
      });
      // a read is not audited
      const evs = (await store.events.list()).events;
      expect(evs.some((e) => e.attributes.method === "ListNodes")).toBe(false);
    } finally {
      await store.close();
      await call(op, "deleteEnv", { name: "audited", wait: false });
    }
  });
});
