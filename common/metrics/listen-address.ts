/** "host:port" parsing for the HTTP listeners (metrics, console). */
import { isIP } from "node:net";
import { invalidArgument } from "../errors.js";

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i).replace(/^\[|\]$/g, "");
  const portText = listen.slice(i + 1);
  const port = Number(portText);
  if (i <= 0 || !host || !/^\d{1,5}$/.test(portText) || port < 0 || port > 65535) {
    throw invalidArgument(`${JSON.stringify(listen)} is not host:port`, {
      reason: "CONFIG_INVALID",
      hint: "e.g. 127.0.0.1:9464",
    });
  }
  return { host, port };
}

/** 127.0.0.0/8, ::1 and "localhost": reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  return isIP(host) === 4 && host.startsWith("127.");
}
