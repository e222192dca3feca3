/**
 * controller/agents: the one way the controller calls agents (issue 18
 * item 2). One AgentService client per node address, reused across calls (a gRPC
 * channel is expensive to make and cheap to share), closed when the address
 * changes or the controller stops.
 *
 * Two transports per node: the grpc-js client for streams and everything
 * else, and a lean HTTP/2 unary path (common/h2-unary.ts) for the calls the
 * env loop makes once per env (create, start, stop, delete), where grpc-js's
 * per-call cost is what limits placements per second.
 */

import { createSecureContext, type SecureContext } from "node:tls";
import { type ChannelCredentials, Metadata } from "@grpc/grpc-js";
import { notFound } from "../../common/errors.js";
import { GRPC_BASE_OPTIONS } from "../../common/grpc.js";
import { defaultUnaryDeadline } from "../../common/grpc-deadline.js";
import {
  type CallOptions,
  DEFAULT_UNARY_DEADLINE_MS,
  H2Unary,
  type UnaryDefinition,
} from "../../common/h2-unary.js";
import { clientCredentials, serverIdentityCheck, type TlsMaterial } from "../../common/tls.js";
import { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";

/** Deadline of a liveness question (GetInfo): an agent that does not answer in this is not there. */
export const PROBE_DEADLINE_MS = 1500;

/** Where a node's agent listens, from the store (its inventory's address, else its record's). */
export interface NodeAddresses {
  nodes: { get(node: string): Promise<{ value: { address: string } } | undefined> };
  inventory: { get(node: string): Promise<{ value: { address: string } } | undefined> };
}

interface NodeClients {
  address: string;
  client?: AgentServiceClient;
  h2?: H2Unary;
}

export class AgentClients {
  private readonly clients = new Map<string, NodeClients>();
  /**
   * The lean path's TLS context, made once per TLS material and shared by
   * every agent's connection: making one per connection (CA, certificate and
   * key parsed each time) was ~3 % of the controller's CPU in bench schedule,
   * where the burst's first call to each of 100 agents dials it.
   */
  private shared?: { material: TlsMaterial; context: SecureContext };

  /**
   * @param tls the controller's own certificate and the cluster CA (undefined: insecure).
   * @param credentials grpc-js credentials (default: made from `tls`).
   */
  constructor(
    private readonly tls: () => TlsMaterial | undefined,
    // an agent must show a node certificate: another controller's or a user's would not do
    private readonly credentials: () => ChannelCredentials = () =>
      clientCredentials(tls(), { serverRole: "node" }),
  ) {}

  private entry(node: string, address: string): NodeClients {
    const cur = this.clients.get(node);
    if (cur && cur.address === address) return cur;
    if (cur) closeEntry(cur);
    const fresh: NodeClients = { address };
    this.clients.set(node, fresh);
    return fresh;
  }

  /** The grpc-js client for a node at an address. */
  get(node: string, address: string): AgentServiceClient {
    const e = this.entry(node, address);
    e.client ??= new AgentServiceClient(address, this.credentials(), {
      ...GRPC_BASE_OPTIONS,
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      // a unary call site that names no deadline still gets one (grpc-deadline.ts)
      interceptors: [defaultUnaryDeadline(DEFAULT_UNARY_DEADLINE_MS)],
    });
    return e.client;
  }

  /** A unary call to a node's agent over the lean path: `unary(n, a, AgentServiceService.createEnv, req)`. */
  unary<Req, Res>(
    node: string,
    address: string,
    def: UnaryDefinition<Req, Res>,
    req: Req,
    opts: CallOptions = {},
  ): Promise<Res> {
    const e = this.entry(node, address);
    if (!e.h2) {
      const t = this.tls();
      e.h2 = new H2Unary({
        address,
        insecure: !t,
        ...(t ? { secureContext: this.secureContext(t) } : {}),
        userAgent: "protoctl-controller",
        checkServerIdentity: serverIdentityCheck({ serverRole: "node" }),
      });
    }
    return e.h2.unary(def, req, opts);
  }

  /** The TLS context of `material`, made on first use and again when the material changes. */
  secureContext(material: TlsMaterial): SecureContext {
    if (this.shared?.material !== material) {
      this.shared = {
        material,
        context: createSecureContext({
          ca: material.caPem,
          ...(material.certPem ? { cert: material.certPem } : {}),
          ...(material.keyPem ? { key: material.keyPem } : {}),
        }),
      };
    }
    return this.shared.context;
  }

  /** The grpc-js client of a node, its address read from the store; NOT_FOUND for an unknown node. */
  async forNode(store: NodeAddresses, node: string): Promise<AgentServiceClient> {
    const [rec, inv] = await Promise.all([store.nodes.get(node), store.inventory.get(node)]);
    const address = inv?.value.address || rec?.value.address;
    if (!address)
      throw notFound(`node ${node} not found`, { reason: "NODE_NOT_FOUND", subject: `node/${node}` });
    return this.get(node, address);
  }

  /** True when the node's agent answers GetInfo within PROBE_DEADLINE_MS. */
  async alive(store: NodeAddresses, node: string): Promise<boolean> {
    try {
      const c = await this.forNode(store, node);
      await new Promise<void>((resolve, reject) =>
        c.getInfo({}, new Metadata(), { deadline: new Date(Date.now() + PROBE_DEADLINE_MS) }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      return true;
    } catch {
      return false;
    }
  }

  drop(node: string): void {
    const e = this.clients.get(node);
    if (e) closeEntry(e);
    this.clients.delete(node);
  }

  close(): void {
    for (const e of this.clients.values()) closeEntry(e);
    this.clients.clear();
  }
}

function closeEntry(e: NodeClients): void {
  e.client?.close();
  e.h2?.close();
}
