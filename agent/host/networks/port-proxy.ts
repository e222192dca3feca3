/**
 * Loopback port forwards, in the agent's own process.
 *
 * nspawn's `--port` works here without a system bus: it installs nftables
 * DNAT rules (over netlink) once the env's address appears, so connections
 * to any of the host's addresses reach the env. Except loopback: DNAT does
 * not apply to 127.0.0.0/8 (the kernel will not route martian-sourced
 * packets out of a veth), so `curl 127.0.0.1:PORT` on the host would be
 * refused. The agent covers that case itself, like docker-proxy does: a TCP
 * listener on 127.0.0.1:hostPort per forwarded TCP port, each connection
 * piped to the env's address. UDP on loopback is not forwarded (documented).
 * Listeners belong to the agent process; adopt() reopens them after a restart.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { failedPrecondition } from "../../../common/errors.js";

export interface ProxiedPort {
  hostPort: number;
  containerPort: number;
}

export class PortProxies {
  private readonly servers = new Map<string, Server[]>();

  /** Opens loopback listeners for the env's TCP forwards to `target` (its address, no prefix). */
  async open(env: string, target: string, ports: ProxiedPort[]): Promise<void> {
    await this.close(env);
    const opened: Server[] = [];
    this.servers.set(env, opened);
    try {
      for (const p of ports) opened.push(await listen(p, target));
    } catch (err) {
      await this.close(env);
      throw err;
    }
  }

  async close(env: string): Promise<void> {
    const list = this.servers.get(env) ?? [];
    this.servers.delete(env);
    await Promise.all(
      list.map((s) => new Promise<void>((resolve) => s.close(() => resolve())).catch(() => undefined)),
    );
  }

  async closeAll(): Promise<void> {
    for (const env of [...this.servers.keys()]) await this.close(env);
  }
}

function listen(p: ProxiedPort, target: string): Promise<Server> {
  const server = createServer((down: Socket) => {
    const up = connect(p.containerPort, target);
    const end = () => {
      down.destroy();
      up.destroy();
    };
    down.on("error", end);
    up.on("error", end);
    down.pipe(up);
    up.pipe(down);
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      reject(
        err.code === "EADDRINUSE"
          ? failedPrecondition(`host port ${p.hostPort} is in use on 127.0.0.1`, {
              reason: "PORT_IN_USE",
              hint: "pick another host port",
            })
          : err,
      );
    });
    server.listen({ host: "127.0.0.1", port: p.hostPort, exclusive: true }, () => {
      server.removeAllListeners("error");
      server.on("error", () => undefined);
      server.unref();
      resolve(server);
    });
  });
}
