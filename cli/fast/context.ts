/**
 * The fast entry's reading of the CLI config: the same file, context choice
 * and credentials as cli/config/contexts.ts + cli/client/connect.ts, for the
 * plain case only (a current or PROTOCTL_CONTEXT context that exists, keys
 * readable). Anything else returns undefined and the full CLI runs, giving
 * the usual error or default. Not importing contexts.ts keeps errors.ts and
 * the generated protobuf code out of the fast path (context.test.ts checks
 * that both readings agree).
 */
import { readFileSync } from "node:fs";
import { configPath } from "../config/config-path.js";
import { type MiniMap, parseMiniYaml } from "../config/mini-yaml.js";

export interface FastContext {
  /** host:port */
  address: string;
  /** The configured controller (before PROTOCTL_CONTROLLER), for messages. */
  insecure: boolean;
  serverName?: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

const str = (v: unknown): string | undefined => (v == null ? undefined : String(v));

function pem(data: unknown, path: unknown): Buffer | undefined | null {
  if (data != null && String(data) !== "") return Buffer.from(String(data));
  if (path == null || String(path) === "") return undefined;
  try {
    return readFileSync(String(path));
  } catch {
    return null; // the full CLI says why
  }
}

export function fastContext(env: NodeJS.ProcessEnv): FastContext | undefined {
  let text: string;
  try {
    text = readFileSync(configPath(env), "utf8");
  } catch {
    return undefined;
  }
  const doc = parseMiniYaml(text);
  const contexts = doc?.contexts;
  if (!doc || typeof contexts !== "object" || contexts === null) return undefined;
  const wanted = env.PROTOCTL_CONTEXT || str(doc["current-context"]);
  if (!wanted || !Object.hasOwn(contexts, wanted)) return undefined;
  // every context must be valid for the full CLI to get this far (contexts.ts fromDocument)
  for (const c of Object.values(contexts)) {
    if (typeof c !== "object" || c === null || (c as MiniMap).controller == null) return undefined;
  }
  const c = contexts[wanted] as MiniMap;
  const controller = env.PROTOCTL_CONTROLLER || String(c.controller);
  const insecure = c.insecure === true || c.insecure === "true";
  const out: FastContext = {
    address: controller.replace(/^(grpcs?|https?):\/\//, ""),
    insecure,
    serverName: str(c["server-name"]),
  };
  if (!insecure) {
    const ca = pem(c["ca-data"], c.ca);
    const cert = pem(c["cert-data"], c.cert);
    const key = pem(c["key-data"], c.key);
    if (ca === null || cert === null || key === null) return undefined;
    Object.assign(out, { ca, cert, key });
  }
  return out;
}
