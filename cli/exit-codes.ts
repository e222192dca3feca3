/**
 * The CLI's exit statuses and the one place that turns any error into a
 * status and a message. Scripts rely on these numbers: they are documented in
 * `protoctl --help` and the README, and never change meaning.
 */
import { Code, ProtoctlError } from "../common/errors.js";

export const ExitCode = {
  OK: 0,
  /** The server failed (internal error, command failed on a node, anything unexpected). */
  FAILURE: 1,
  /** Bad flags, bad arguments, invalid names: nothing was sent or the server refused the input. */
  USAGE: 2,
  NOT_FOUND: 3,
  /** Already exists, or a concurrent change won. */
  CONFLICT: 4,
  /** The cluster is not in a state that allows it (node cordoned, base in use, pool full...). */
  PRECONDITION: 5,
  /** The controller (or a node it needs) cannot be reached. */
  UNAVAILABLE: 6,
  /** Credentials missing, rejected or not allowed to do this. */
  PERMISSION: 7,
  /** Interrupted by the user (Ctrl-C). */
  INTERRUPTED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Text for the `--help` footer and the README. */
export const EXIT_CODES_HELP = `Exit status:
  0    success
  1    the server failed (internal error, a command failed on a node)
  2    usage: unknown command or flag, invalid name or value
  3    not found
  4    already exists or conflicting change
  5    precondition not met (node cordoned, base in use, pool full, ...)
  6    the controller is unreachable
  7    not authenticated or not allowed
  130  interrupted
  \`env exec\` and \`env shell\` exit with the remote command's status once it ran.`;

/** Maps a gRPC status code to the CLI's exit status. */
export function exitCodeForGrpc(code: Code): ExitCodeValue {
  switch (code) {
    case Code.OK:
      return ExitCode.OK;
    case Code.INVALID_ARGUMENT:
    case Code.OUT_OF_RANGE:
      return ExitCode.USAGE;
    case Code.NOT_FOUND:
      return ExitCode.NOT_FOUND;
    case Code.ALREADY_EXISTS:
    case Code.ABORTED:
      return ExitCode.CONFLICT;
    case Code.FAILED_PRECONDITION:
    case Code.RESOURCE_EXHAUSTED:
      return ExitCode.PRECONDITION;
    case Code.UNAVAILABLE:
    case Code.DEADLINE_EXCEEDED:
      return ExitCode.UNAVAILABLE;
    case Code.UNAUTHENTICATED:
    case Code.PERMISSION_DENIED:
      return ExitCode.PERMISSION;
    case Code.CANCELLED:
      return ExitCode.INTERRUPTED;
    default:
      return ExitCode.FAILURE;
  }
}

/** A commander parse error, kept structural so this file does not import commander. */
interface CommanderErrorLike {
  code: string;
  exitCode: number;
  message: string;
}

function isCommanderError(err: unknown): err is CommanderErrorLike {
  return (
    err instanceof Error &&
    typeof (err as { code?: unknown }).code === "string" &&
    String((err as { code?: unknown }).code).startsWith("commander.")
  );
}

/** An exit requested by a command that already printed what it had to say. */
export class ExitRequest extends Error {
  override readonly name = "ExitRequest";
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

export interface Report {
  exitCode: number;
  /** Lines for stderr; empty when nothing needs saying. */
  lines: string[];
}

/** Decides the exit status and the stderr text for anything a command threw. */
export function reportFor(err: unknown, debug = false): Report {
  if (err instanceof ExitRequest) return { exitCode: err.exitCode, lines: [] };
  if (isCommanderError(err)) {
    // Commander already printed its message (or the help) through configureOutput.
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version") {
      return { exitCode: ExitCode.OK, lines: [] };
    }
    return { exitCode: ExitCode.USAGE, lines: [] };
  }
  const pe = asProtoctlError(err);
  const lines = [`error: ${sentence(pe.message)}`];
  if (pe.hint) lines.push(`hint: ${pe.hint}`);
  if (pe.output) {
    const tail = pe.output.trimEnd().split("\n").slice(-15);
    lines.push("output (last lines):", ...tail.map((l) => `  ${l}`));
  }
  if (debug) {
    const stack = (pe.cause instanceof Error ? pe.cause : pe).stack;
    lines.push(`code: ${Code[pe.code]} reason: ${pe.reason}`);
    if (stack) lines.push(stack);
  }
  return { exitCode: exitCodeFor(pe), lines };
}

/**
 * A command that ran on a node and failed (a recipe, a base update) travels as
 * FAILED_PRECONDITION (nothing was recorded), but for the user it is the
 * documented status 1: "a command failed on a node".
 */
const COMMAND_FAILED = new Set(["RECIPE_FAILED", "UPDATE_FAILED"]);

function exitCodeFor(pe: ProtoctlError): ExitCodeValue {
  if (pe.reason && COMMAND_FAILED.has(pe.reason)) return ExitCode.FAILURE;
  return exitCodeForGrpc(pe.code);
}

/**
 * ProtoctlError.from, also accepting a ProtoctlError from another copy of
 * common/errors (the daemons' unbundled modules, loaded by the bundled CLI).
 */
function asProtoctlError(err: unknown): ProtoctlError {
  if (err instanceof ProtoctlError) return err;
  const e = err as Partial<ProtoctlError> | null;
  if (e instanceof Error && e.name === "ProtoctlError" && typeof e.code === "number") {
    return new ProtoctlError(e.code, e.message, {
      reason: e.reason,
      hint: e.hint,
      subject: e.subject,
      output: e.output,
      metadata: e.metadata,
      cause: e.cause,
    });
  }
  return ProtoctlError.from(err);
}

/** One line, no trailing period doubling, no newlines. */
function sentence(msg: string): string {
  const one = msg.replace(/\s*\n\s*/g, " ").trim();
  return one.length > 0 ? one : "unknown error";
}
