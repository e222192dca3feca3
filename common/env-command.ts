/**
 * Checks an env's command (EnvSpec.command: from an OCI image's config or
 * from the API) before it reaches an argv entry: the controller checks it at
 * create, the agent again before it starts the machine. Refused with
 * INVALID_ARGUMENT (reason INVALID_COMMAND).
 */
import type { EnvCommand } from "../proto/gen/protoctl/v1/types.js";
import { invalidArgument } from "./errors.js";

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A user name as useradd takes it, or a numeric uid (a `uid:gid` pair is not supported by nspawn's --user). */
const USER = /^(?:[0-9]{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$/;
const MAX_ARGS = 1024;
const MAX_BYTES = 256 * 1024;

function bad(message: string): never {
  throw invalidArgument(`env command: ${message}`, { reason: "INVALID_COMMAND" });
}

export function checkEnvCommand(c: EnvCommand): EnvCommand {
  if (c.argv.length > MAX_ARGS) bad(`more than ${MAX_ARGS} arguments`);
  let bytes = 0;
  for (const a of c.argv) {
    if (a.includes("\0")) bad("an argument holds a NUL byte");
    bytes += a.length;
  }
  if (c.argv.length > 0 && c.argv[0] === "") bad("the program name is empty");
  if (
    c.workdir &&
    (!c.workdir.startsWith("/") || c.workdir.includes("\0") || c.workdir.split("/").includes(".."))
  ) {
    bad(`working directory ${JSON.stringify(c.workdir)} must be an absolute path without ".."`);
  }
  if (c.user && !USER.test(c.user)) bad(`user ${JSON.stringify(c.user)} is not a user name or a numeric uid`);
  for (const [k, v] of Object.entries(c.env)) {
    if (!ENV_KEY.test(k)) bad(`invalid environment variable name ${JSON.stringify(k)}`);
    if (v.includes("\0")) bad(`environment variable ${k} holds a NUL byte`);
    bytes += k.length + v.length;
  }
  if (bytes > MAX_BYTES) bad(`larger than ${MAX_BYTES} bytes`);
  return c;
}
