/**
 * Bounded input at the controller (issue #15 item 8), over real gRPC with a
 * real etcd: a ~600-byte alias/merge bomb lab file is refused with
 * INVALID_ARGUMENT in milliseconds and the controller keeps answering; a
 * request message above MAX_REQUEST_BYTES is refused by grpc-js with
 * RESOURCE_EXHAUSTED; neither leaves a lab behind.
 */

import { afterAll, beforeAll, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { fromServiceError, MAX_REQUEST_BYTES } from "../../common/grpc.js";
import type { ControlServiceClient } from "../../proto/gen/protoctl/v1/control.js";
import { startEtcd, type TestEtcd } from "../../test/fixtures/etcd.js";
import {
  call,
  client,
  startTestController,
  streamed,
  uniquePrefix,
} from "../../test/support/controller/cluster.js";
import type { RunningController } from "../controller.js";

let etcd: TestEtcd;
let ctl: RunningController;
let c: ControlServiceClient;

beforeAll(async () => {
  etcd = await startEtcd();
  ctl = await startTestController(etcd.endpoint, uniquePrefix());
  c = client(ctl.address);
});

afterAll(async () => {
  c?.close();
  await ctl?.stop();
  await etcd?.stop();
});

function mergeBomb(levels = 20): string {
  const a = (i: number) => String.fromCharCode(97 + i);
  let s = "name: bomb\nx-a: &a {k: 1}\n";
  for (let i = 1; i < levels; i++)
    s += `x-${a(i)}: &${a(i)} {<<: [*${a(i - 1)}, *${a(i - 1)}], n: *${a(i - 1)}}\n`;
  return `${s}machines:\n  m: {base: b, <<: *${a(levels - 1)}}\n`;
}

const apply = (specYaml: string) => streamed(c.applyLab({ specYaml, wait: false, dryRun: false }));

it("refuses the alias/merge bomb lab file quickly and keeps serving", async () => {
  const text = mergeBomb();
  expect(text.length).toBeLessThan(700);
  await call(c, "getVersion", {}); // connected
  const t0 = performance.now();
  const err = await apply(text).then(
    () => undefined,
    (e: unknown) => fromServiceError(e),
  );
  const ms = performance.now() - t0;
  console.log(`ApplyLab with a ${text.length}-byte merge bomb refused in ${ms.toFixed(1)} ms (round trip)`);
  expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "INVALID_LAB_SPEC" });
  expect(err?.message).toMatch(/expand too much/);
  expect(ms).toBeLessThan(2000);
  // not stalled: the next call is answered
  expect((await call(c, "getVersion", {}, 2000)).controller).toBe(ctl.id);
  expect((await call(c, "listLabs", {})).labs).toEqual([]);
});

it("refuses a request above MAX_REQUEST_BYTES with RESOURCE_EXHAUSTED", async () => {
  const huge = `name: big\ndescription: "${"x".repeat(MAX_REQUEST_BYTES)}"\nmachines:\n  m: {base: b}\n`;
  await expect(apply(huge)).rejects.toMatchObject({
    code: Code.RESOURCE_EXHAUSTED,
    message: expect.stringMatching(/Received message larger than max/),
  });
  expect((await call(c, "listLabs", {})).labs).toEqual([]);
});
