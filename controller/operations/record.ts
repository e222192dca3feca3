/**
 * Long operations as desired state (issue 18 item 1): a push, a base
 * deletion, … is a record `operations/<id>` (spec + status). Any replica's
 * API handler writes the spec and follows the status; the leader's
 * OperationReconciler moves it forward. A controller killed at any point
 * leaves the record to the next leader, which reads it and the world and does
 * the next step: nothing resumes, everything reconciles.
 */
import { createHash, randomBytes } from "node:crypto";
import type { AttachmentPhase } from "../../proto/gen/protoctl/v1/types.js";

/** Who asked for a push: the API, the scheduler's hook, or a delta that needs its parent local first. */
export type PushOrigin = "api" | "scheduler" | "parent";

export interface PushSpec {
  base: string;
  version: number;
  /** Resolved when the record is written (nodes, selector or all), so a new leader pushes to the same set. */
  targets: string[];
  fanout: number;
  transport: string;
  asker: PushOrigin;
}

export interface BaseDeleteSpec {
  base: string;
  /** 0: every version. */
  version: number;
}

/** `env move`: env-move-pass.ts. */
export interface EnvMoveSpec {
  env: string;
  from: string;
  to: string;
}

export type OperationSpec =
  | { kind: "push"; push: PushSpec }
  | { kind: "base-delete"; baseDelete: BaseDeleteSpec }
  | { kind: "env-move"; envMove: EnvMoveSpec };

export type OperationPhase = "pending" | "running" | "succeeded" | "failed";

/** An error as it crosses the store (a ProtoctlError's fields). */
export interface StoredError {
  code: number;
  message: string;
  reason: string;
  hint?: string;
  subject?: string;
}

/** One target of a push: its latest phase, and whether it is usable (attached or local) yet. */
export interface PushNodeStatus {
  phase: AttachmentPhase;
  fraction: number;
  sourceNode: string;
  message: string;
  usable: boolean;
  error?: StoredError;
}

/** A progress line as the CLI shows it, numbered so a follower streams each once. */
export interface ProgressLine {
  seq: number;
  node: string;
  phase: AttachmentPhase;
  fraction: number;
  sourceNode: string;
  message: string;
}

export interface OperationStatus {
  phase: OperationPhase;
  /** Progress lines, oldest first (the last MAX_LINES). */
  lines: ProgressLine[];
  nodes: Record<string, PushNodeStatus>;
  error?: StoredError;
  /**
   * A push: how it got its seed image, and how long its critical path waited
   * for it (propagation/run.ts SeedWait; "at-seal": the rest of the origin's
   * publish begun when the version was sealed).
   */
  seed?: { node: string; how: "recorded" | "at-seal" | "published"; waitMs: number };
  /** What a finished operation returns (base-delete: the deleted versions, as JSON). */
  result?: unknown;
  /** Controller that last moved it, and how many passes ran (a pass per leader, or per retry). */
  controller: string;
  passes: number;
  updatedMs: number;
  /** Last progress (or creation): a pass that cannot start retries for a while after it. */
  progressMs: number;
  finishedMs?: number;
}

export interface OperationRecord {
  spec: OperationSpec;
  status: OperationStatus;
  createdMs: number;
}

export const MAX_LINES = 512;

/** Finished records are kept this long for followers and `describe`, then the leader deletes them. */
export const KEEP_FINISHED_MS = 10 * 60_000;

export const isFinished = (s: OperationStatus) => s.phase === "succeeded" || s.phase === "failed";

/** A fresh id: "op-<time base36>-<random hex>" (sorts by time, never reused). */
export function newOperationId(now = Date.now()): string {
  return `op-${now.toString(36)}-${randomBytes(4).toString("hex")}`;
}

/** A stable id for an operation asked for repeatedly (the scheduler's hook for base@N on a node). */
export function stableOperationId(...parts: string[]): string {
  return `op-${createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 24)}`;
}

export function newRecord(spec: OperationSpec, now = Date.now()): OperationRecord {
  return {
    spec,
    createdMs: now,
    status: {
      phase: "pending",
      lines: [],
      nodes: {},
      controller: "",
      passes: 0,
      updatedMs: now,
      progressMs: now,
    },
  };
}
