/**
 * Membership RPCs: tokens, join, heartbeats, and the node listing composed
 * from the three node folders (registration, inventory, lease-bound
 * liveness). Cordon/drain/uncordon flip flags in the node record; the
 * scheduler reads them, and the env loop moves restart=ALWAYS envs off a
 * draining node.
 */
import type { ServerWritableStream } from "@grpc/grpc-js";
import { baseRefOf } from "../../common/base-ref.js";
import { failedPrecondition } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import type {
  CreateJoinTokenRequest,
  NodeHeartbeat,
  NodeRequest,
} from "../../proto/gen/protoctl/v1/control.js";
import {
  EnvPhase,
  type Node,
  NodeState,
  type OperationEvent,
  RestartPolicy,
} from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { machinesProblem } from "../membership/capabilities.js";
import { handleHeartbeat } from "../membership/heartbeat.js";
import { joinNode } from "../membership/join.js";
import { createJoinToken } from "../membership/tokens.js";
import type { AliveRecord } from "../store/store.js";
import { identityCodecs, revokeWrite } from "../users/records.js";
import { serverStream, unary } from "./handlers.js";

export function composeNode(rec: Node, inv: NodeHeartbeat | undefined, alive: AliveRecord | undefined): Node {
  return {
    ...rec,
    address: inv?.address || rec.address,
    state: alive && !machinesProblem(inv) ? NodeState.NODE_STATE_READY : NodeState.NODE_STATE_NOT_READY,
    capacity: inv?.capacity,
    baseVersions: (inv?.bases ?? []).map((b) => baseRefOf(b)),
    foreignBaseVersions: (inv?.foreignBases ?? []).map((b) => baseRefOf(b)),
    capabilities: inv?.capabilities ?? [],
    lastSeenMs: inv?.sentMs || rec.lastSeenMs,
    agentVersion: inv?.agentVersion || rec.agentVersion,
  };
}

export async function listNodes(ctx: ControllerContext): Promise<Node[]> {
  const s = ctx.store;
  const [nodes, inv, alive] = await Promise.all([s.nodes.list(), s.inventory.list(), s.alive.list()]);
  const invBy = new Map(inv.items.map((i) => [s.inventory.nameOf(i.key)!, i.value]));
  const aliveBy = new Map(alive.items.map((i) => [s.alive.nameOf(i.key)!, i.value]));
  return nodes.items.map((n) => composeNode(n.value, invBy.get(n.value.name), aliveBy.get(n.value.name)));
}

export async function getNode(ctx: ControllerContext, name: string): Promise<Node> {
  validateName("node", name);
  const s = ctx.store;
  const [rec, inv, alive] = await Promise.all([
    s.nodes.mustGet(name),
    s.inventory.get(name),
    s.alive.get(name),
  ]);
  return composeNode(rec.value, inv?.value, alive?.value);
}

export function nodeApi(ctx: ControllerContext) {
  const s = ctx.store;
  const setFlags = async (
    name: string,
    flags: Partial<Pick<Node, "cordoned" | "draining">>,
    kind: string,
  ) => {
    validateName("node", name);
    await s.nodes.modify(name, (cur) =>
      Object.entries(flags).every(([k, v]) => cur[k as keyof Node] === v) ? undefined : { ...cur, ...flags },
    );
    await s.events.emit({
      kind,
      subject: `node/${name}`,
      message: `${kind.split(".")[1]} ${name}`,
      node: name,
    });
    return getNode(ctx, name);
  };

  return {
    createJoinToken: unary((req: CreateJoinTokenRequest) =>
      createJoinToken(s, {
        ttlSeconds: req.ttlSeconds,
        labels: req.labels,
        caFingerprint: ctx.tls?.caFingerprint,
        uses: req.uses,
        reusable: req.reusable,
        node: req.node,
        replace: req.replace,
      }),
    ),
    joinNode: unary((req: Parameters<typeof joinNode>[1], call) =>
      joinNode(ctx, req, call as Parameters<typeof joinNode>[2]),
    ),
    heartbeat: (call: Parameters<typeof handleHeartbeat>[1]) => handleHeartbeat(ctx, call),
    listNodes: unary(async () => ({ nodes: await listNodes(ctx) })),
    getNode: unary((req: { name: string }) => getNode(ctx, req.name)),
    cordonNode: unary((req: NodeRequest) => setFlags(req.name, { cordoned: true }, "node.cordoned")),
    uncordonNode: unary((req: NodeRequest) =>
      setFlags(req.name, { cordoned: false, draining: false }, "node.uncordoned"),
    ),
    drainNode: serverStream<NodeRequest, OperationEvent>(
      async (req, send, call: ServerWritableStream<NodeRequest, OperationEvent>) => {
        // Which envs must move is read before the flags flip: the leader starts moving them at once.
        const before = await s.envStatus.list();
        const moving = new Set(
          before.items.filter((i) => i.value.node === req.name).map((i) => s.envStatus.nameOf(i.key)!),
        );
        await setFlags(req.name, { cordoned: true, draining: true }, "node.draining");
        const progress = (message: string, fraction: number) =>
          send({
            event: {
              $case: "progress",
              progress: { step: "drain", fraction, message, node: req.name, bytesDone: 0, bytesTotal: 0 },
            },
          });
        let gone = false;
        call.on("cancelled", () => {
          gone = true;
        });
        const deadline = Date.now() + 10 * 60_000;
        let total = -1;
        while (!gone && Date.now() < deadline) {
          const [specs, statuses] = await Promise.all([s.envSpecs.list(), s.envStatus.list()]);
          const restart = new Set(
            specs.items
              .filter((i) => i.value.restart === RestartPolicy.RESTART_POLICY_ALWAYS)
              .map((i) => i.value.name),
          );
          const here = statuses.items
            .filter((i) => i.value.node === req.name && i.value.phase !== EnvPhase.ENV_PHASE_LOST)
            .map((i) => s.envStatus.nameOf(i.key)!);
          // An env counts as moved once it runs (or has failed) elsewhere, not when it is merely rescheduled.
          const settled = new Set([
            EnvPhase.ENV_PHASE_RUNNING,
            EnvPhase.ENV_PHASE_FAILED,
            EnvPhase.ENV_PHASE_STOPPED,
          ]);
          const inFlight = statuses.items
            .filter((i) => i.value.node !== req.name && !settled.has(i.value.phase))
            .map((i) => s.envStatus.nameOf(i.key)!)
            .filter((n) => moving.has(n));
          const movable = [...here.filter((n) => restart.has(n)), ...inFlight];
          if (total < 0) total = movable.length;
          if (movable.length === 0) {
            const kept = here.filter((n) => !restart.has(n));
            progress(
              kept.length
                ? `drained; ${kept.length} env(s) without restart policy stay until deleted: ${kept.slice(0, 10).join(", ")}`
                : "drained",
              1,
            );
            return;
          }
          progress(`moving ${movable.length} env(s) elsewhere`, total ? 1 - movable.length / total : 0);
          await new Promise((r) => setTimeout(r, 500));
        }
      },
    ),
    removeNode: unary(async (req: NodeRequest) => {
      const node = await getNode(ctx, req.name);
      if (node.state === NodeState.NODE_STATE_READY) {
        throw failedPrecondition(`node ${req.name} is Ready`, {
          reason: "NODE_READY",
          hint: "stop its agent (or drain it) first; a Ready node would join again with its next heartbeat",
        });
      }
      // the removed node's certificate is revoked: the name is free and the old machine cannot rejoin by it
      const ident = await s.kv.get(s.keys.nodeIdentity(req.name), identityCodecs.node);
      await s.kv.commit({
        conditions: [],
        writes: [
          { op: "delete", key: s.keys.node(req.name) },
          { op: "delete", key: s.keys.nodeInventory(req.name) },
          { op: "delete", key: s.keys.nodeIdentity(req.name) },
          ...(ident ? [revokeWrite(s, ident.value.serial, `node/${req.name}`)] : []),
        ],
      });
      await s.events.emit({
        kind: "node.removed",
        subject: `node/${req.name}`,
        message: `removed ${req.name}`,
        node: req.name,
      });
      return {};
    }),
  };
}
