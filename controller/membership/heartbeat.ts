/**
 * Server side of ControlService.Heartbeat. The replica serving an agent's
 * stream grants an etcd lease for the node (TTL membership.leaseTtlSeconds),
 * binds the node's liveness key `node-alive/<name>` to it, and refreshes the
 * lease once per heartbeat received, not on a timer: a hung agent whose TCP
 * stream stays open still goes NotReady. When the stream breaks the lease is
 * left to lapse rather than revoked, so an agent that reconnects (to any
 * replica) within the TTL never flaps; the new replica's lease takes over
 * the key.
 *
 * Inventory (capacity, bases, capabilities) is written to
 * `node-inventory/<name>` only when the agent says it changed, so a steady
 * cluster costs one lease keepalive per node per interval and no writes.
 * A reported base version is never recorded from here: only what matches a
 * seal the controller recorded counts (inventory.ts).
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Lease } from "etcd3";
import { failedPrecondition, ProtoctlError, permissionDenied } from "../../common/errors.js";
import { toServiceError } from "../../common/grpc.js";
import { validateName } from "../../common/names.js";
import { peerIdentity } from "../../common/tls.js";
import type { HeartbeatAck, NodeHeartbeat } from "../../proto/gen/protoctl/v1/control.js";
import type { ControllerContext } from "../context.js";
import { codecs } from "../store/store.js";
import { type InventoryMemo, writeInventory } from "./inventory.js";

export function handleHeartbeat(
  ctx: ControllerContext,
  call: ServerDuplexStream<NodeHeartbeat, HeartbeatAck>,
): void {
  const ttl = Math.max(2, Math.round(ctx.config.membership.leaseTtlSeconds));
  let node: string | undefined;
  let lease: Lease | undefined;
  let leaseId: string | undefined;
  let closed = false;
  let chain = Promise.resolve();
  const memo: InventoryMemo = {};

  const fail = (err: unknown) => {
    if (closed) return;
    closed = true;
    call.emit("error", toServiceError(err));
    lease?.release();
  };

  const onMessage = async (hb: NodeHeartbeat) => {
    if (closed) return;
    if (!node) {
      const name = validateName("node", hb.node);
      if (ctx.tls) {
        const peer = peerIdentity(call, ctx.tls.ca.certPem);
        if (peer?.role !== "node" || peer.cn !== name) {
          throw permissionDenied(`only node ${name} may heartbeat for node ${name}`, { reason: "FORBIDDEN" });
        }
      }
      const rec = await ctx.store.nodes.get(name);
      if (!rec) {
        throw failedPrecondition(`node ${name} has not joined`, {
          reason: "NODE_NOT_JOINED",
          hint: "join it with a token from `protoctl node token`",
        });
      }
      node = name;
      lease = ctx.store.client.lease(ttl, { autoKeepAlive: false });
      leaseId = await lease.grant();
      await writeAlive(ctx, name, leaseId, hb, memo);
      ctx.log.debug({ node: name, lease: leaseId }, "heartbeat stream opened");
    } else {
      if (hb.node && hb.node !== node)
        throw permissionDenied("a heartbeat stream serves one node", { reason: "FORBIDDEN" });
      try {
        await lease!.keepaliveOnce();
      } catch {
        // the lease lapsed (etcd unreachable for longer than the TTL): take a new one
        lease = ctx.store.client.lease(ttl, { autoKeepAlive: false });
        leaseId = await lease.grant();
        await writeAlive(ctx, node, leaseId, { ...hb, inventory: true }, memo);
        return ack();
      }
      if (hb.inventory) await writeInventory(ctx, node, hb, memo);
    }
    ack();
  };

  const ack = () => {
    if (closed) return;
    call.write({
      controller: ctx.id,
      intervalMs: ctx.config.membership.heartbeatIntervalMs,
      leaseTtlMs: ttl * 1000,
    });
  };

  call.on("data", (hb: NodeHeartbeat) => {
    chain = chain.then(() => onMessage(hb)).catch(fail);
  });
  const end = () => {
    if (closed) return;
    closed = true;
    lease?.release();
    if (node) ctx.log.debug({ node }, "heartbeat stream closed");
    try {
      call.end();
    } catch {
      // already gone
    }
  };
  call.on("end", end);
  call.on("cancelled", end);
  call.on("error", end);
}

async function writeAlive(
  ctx: ControllerContext,
  node: string,
  leaseId: string,
  hb: NodeHeartbeat,
  memo: InventoryMemo,
): Promise<void> {
  const s = ctx.store;
  const writes = [
    {
      op: "put" as const,
      key: s.keys.nodeAlive(node),
      value: codecs.alive.encode({ controller: ctx.id, sinceMs: Date.now() }),
      lease: leaseId,
    },
  ];
  const r = await s.kv.commit({ conditions: [], writes });
  if (!r.succeeded) throw new ProtoctlError(13, "could not record node liveness");
  await writeInventory(ctx, node, hb, memo);
}
