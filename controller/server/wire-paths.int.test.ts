/**
 * The same ControlService calls over both wire paths the CLI uses (issue 18
 * item 5): grpc-js (streams, and where the fast path is off) and the HTTP/2
 * unary client (common/h2-unary.ts) against a real controller and etcd. Each
 * call must answer the same message, or fail with the same code and reason.
 */
import { isDeepStrictEqual } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { fromServiceError } from "../../common/grpc.js";
import { H2Unary } from "../../common/h2-unary.js";
import { type ControlServiceClient, ControlServiceService } from "../../proto/gen/protoctl/v1/control.js";
import { startEtcd, type TestEtcd } from "../../test/fixtures/etcd.js";
import { sealFakeBases } from "../../test/harness/fake-agent.js";
import {
  call,
  client,
  eventually,
  startTestController,
  testEnvSpec,
  uniquePrefix,
} from "../../test/support/controller/cluster.js";
import type { RunningController } from "../controller.js";

let etcd: TestEtcd;
let ctl: RunningController;
let grpc: ControlServiceClient;
let h2: H2Unary;

beforeAll(async () => {
  etcd = await startEtcd();
  const prefix = uniquePrefix();
  // the envs below name debian: a create of a base the cluster never sealed is refused
  await sealFakeBases({ endpoint: etcd.endpoint, prefix }, [{ name: "n1" }]);
  ctl = await startTestController(etcd.endpoint, prefix);
  grpc = client(ctl.address);
  h2 = new H2Unary({ address: ctl.address, insecure: true });
  // getVersion names the leader: wait for the election, so both paths see the same answer
  await eventually(async () => (await call(grpc, "getVersion", {})).leader !== "", 30_000);
});

afterAll(async () => {
  h2?.close();
  grpc?.close();
  await ctl?.stop();
  await etcd?.stop();
});

type Outcome = { ok: unknown } | { code: number; reason: string | undefined };

/** One unary call by both paths: its answers, or its errors as code + reason. */
async function both(method: keyof typeof ControlServiceService & keyof ControlServiceClient, req: object) {
  const settle = (p: Promise<unknown>): Promise<Outcome> =>
    p.then(
      (ok) => ({ ok }),
      (err) => {
        const e = fromServiceError(err);
        return { code: e.code, reason: e.reason };
      },
    );
  const def = ControlServiceService[method] as Parameters<H2Unary["unary"]>[0];
  const viaGrpc = await settle(call(grpc, method, req as never));
  const viaH2 = await settle(h2.unary(def, req, { deadlineMs: 30_000 }));
  return { viaGrpc, viaH2 };
}

/**
 * `both` for a read of envs the leader is reconciling meanwhile (it writes why they stay Pending):
 * a write landing between the two reads is read again, until both paths read the same state.
 */
async function bothSettled(method: Parameters<typeof both>[0], req: object) {
  let got = await both(method, req);
  for (let i = 0; i < 20 && !isDeepStrictEqual(got.viaH2, got.viaGrpc); i++) {
    await new Promise((r) => setTimeout(r, 50));
    got = await both(method, req);
  }
  return got;
}

it("answers the same over grpc-js and the HTTP/2 unary client", async () => {
  const version = await both("getVersion", {});
  expect(version.viaH2).toEqual(version.viaGrpc);
  expect(version.viaGrpc).toMatchObject({ ok: { controller: ctl.id } });

  const nodes = await both("listNodes", {});
  expect(nodes.viaH2).toEqual(nodes.viaGrpc);
  expect(nodes.viaGrpc).toEqual({ ok: { nodes: [] } });

  // written once over each path, then read back over both
  await call(grpc, "createEnv", { spec: testEnvSpec("wire-a"), wait: false });
  await h2.unary(
    ControlServiceService.createEnv,
    { spec: testEnvSpec("wire-b"), wait: false },
    { deadlineMs: 30_000 },
  );
  for (const name of ["wire-a", "wire-b"]) {
    const got = await bothSettled("getEnv", { name });
    expect(got.viaH2).toEqual(got.viaGrpc);
    expect(got.viaGrpc).toMatchObject({ ok: { spec: { name } } });
  }
  const list = await bothSettled("listEnvs", {});
  expect(list.viaH2).toEqual(list.viaGrpc);
});

it("fails the same way over both: code and reason", async () => {
  const missing = await both("getEnv", { name: "no-such-env" });
  expect(missing.viaGrpc).toMatchObject({ code: 5 }); // NOT_FOUND
  expect(missing.viaH2).toEqual(missing.viaGrpc);

  const bad = await both("createEnv", { spec: testEnvSpec("Bad Name!") });
  expect(bad.viaGrpc).toMatchObject({ code: 3 }); // INVALID_ARGUMENT
  expect(bad.viaH2).toEqual(bad.viaGrpc);

  const noBase = await both("createEnv", {
    spec: testEnvSpec("wire-nb", { base: { name: "nope", version: 0 } }),
  });
  expect(noBase.viaGrpc).toEqual({ code: 5, reason: "BASE_NOT_FOUND" });
  expect(noBase.viaH2).toEqual(noBase.viaGrpc);

  await call(grpc, "createEnv", { spec: testEnvSpec("wire-dup"), wait: false });
  const exists = await both("createEnv", { spec: testEnvSpec("wire-dup") });
  expect(exists.viaGrpc).toMatchObject({ code: 6 }); // ALREADY_EXISTS
  expect(exists.viaH2).toEqual(exists.viaGrpc);
});
