/**
 * The fast entry's failures, reported exactly as the full CLI reports them:
 * the status becomes the same ProtoctlError (common/h2-unary.ts statusError),
 * goes through the same Api.explain (unreachable controller, refused
 * credentials) and the same reportFor (sentence, hint, exit status). Loaded
 * only when a call failed, so its imports (generated protobuf code included)
 * cost nothing on success.
 */
import { internal } from "../../common/errors.js";
import { statusError } from "../../common/h2-unary.js";
import { Api } from "../client/connect.js";
import type { ResolvedContext } from "../config/contexts.js";
import { reportFor } from "../exit-codes.js";
import type { Failure } from "./call.js";

export type FastFailure = { status: Failure } | { noExitStatus: true };

/** Writes the error lines to stderr and returns the exit status. */
export function reportFastFailure(address: string, f: FastFailure): number {
  const api = new Api(address, { controller: address, name: "", source: "context" } as ResolvedContext, {});
  const err =
    "status" in f
      ? api.explain(statusError(f.status.code, f.status.message, f.status.md))
      : api.explain(
          internal("the exec stream ended without an exit status", {
            reason: "EXEC_NO_STATUS",
            hint: "the env may have stopped; see `protoctl env describe` and `protoctl env logs`",
          }),
        );
  api.close();
  const report = reportFor(err, false);
  if (report.lines.length) process.stderr.write(`${report.lines.join("\n")}\n`);
  return report.exitCode;
}
