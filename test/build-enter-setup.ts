/**
 * vitest globalSetup of the integration project: builds protoctl-enter beside
 * its sources (agent/host/machines/enter/) when missing or older than enter.c,
 * for agents and drivers that run from the TypeScript sources. `npm run build`
 * makes the copy under dist/.
 */
import { fileURLToPath } from "node:url";
// @ts-expect-error plain JavaScript build script without types
import { buildEnter } from "../agent/host/machines/enter/build.mjs";

export default function setup(): void {
  buildEnter(fileURLToPath(new URL("../agent/host/machines/enter/protoctl-enter", import.meta.url)));
}
