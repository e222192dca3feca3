/** Asserts that a promise rejects with a ProtoctlError of the given gRPC code (and reason). */
import { expect } from "vitest";
import { type Code, ProtoctlError } from "../../common/errors.js";

export async function expectCode(p: Promise<unknown> | (() => unknown), code: Code, reason?: string) {
  let err: unknown;
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, "expected a rejection").toBeInstanceOf(ProtoctlError);
  expect((err as ProtoctlError).code).toBe(code);
  if (reason !== undefined) expect((err as ProtoctlError).reason).toBe(reason);
}
