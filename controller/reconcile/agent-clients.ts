/**
 * One AgentService client per node address, reused across calls (a gRPC
 * channel is expensive to make and cheap to share), closed when the address
 * changes or the controller stops.
 */
import type { ChannelCredentials } from "@grpc/grpc-js";
import { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";

export class AgentClients {
  private readonly clients = new Map<string, { address: string; client: AgentServiceClient }>();

  constructor(private readonly credentials: () => ChannelCredentials) {}

  /** The client for a node at an address. */
  get(node: string, address: string): AgentServiceClient {
    const cur = this.clients.get(node);
    if (cur && cur.address === address) return cur.client;
    cur?.client.close();
    const client = new AgentServiceClient(address, this.credentials(), {
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
    this.clients.set(node, { address, client });
    return client;
  }

  drop(node: string): void {
    this.clients.get(node)?.client.close();
    this.clients.delete(node);
  }

  close(): void {
    for (const { client } of this.clients.values()) client.close();
    this.clients.clear();
  }
}
