/**
 * The grpc-js client for streaming calls. Built here from the service table
 * rather than taken from the generated `ControlServiceClient`: that class is
 * made when control.ts loads, and using it would drag grpc-js into every
 * command that only needs the table for unary calls (see cli/build/bundle.mjs).
 */
import { credentials, makeGenericClientConstructor } from "@grpc/grpc-js";
import { type ControlServiceClient, ControlServiceService } from "../../proto/gen/protoctl/v1/control.js";
import type { ResolvedContext } from "../config/contexts.js";
import type { Credentials } from "./connect.js";
import { controllerCertCheck } from "./server-role.js";

export function grpcClient(address: string, ctx: ResolvedContext, c: Credentials): ControlServiceClient {
  const Client = makeGenericClientConstructor(
    ControlServiceService,
    "protoctl.v1.ControlService",
  ) as unknown as new (
    ...args: ConstructorParameters<ReturnType<typeof makeGenericClientConstructor>>
  ) => ControlServiceClient;
  const creds = ctx.insecure
    ? credentials.createInsecure()
    : credentials.createSsl(c.ca ?? null, c.key ?? null, c.cert ?? null, {
        checkServerIdentity: controllerCertCheck(ctx.serverName),
      });
  return new Client(address, creds, {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    // A CLI call should fail fast when the controller is down, not retry for 20 s.
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
    ...(ctx.serverName && !ctx.insecure ? { "grpc.ssl_target_name_override": ctx.serverName } : {}),
  });
}
