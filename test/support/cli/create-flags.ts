/** `env create`'s parsed flags for CLI unit tests: a plain create of busybox, with `over` on top. */
import type { CreateOpts } from "../../../cli/commands/env.js";

export function createFlags(over: Partial<CreateOpts> = {}): CreateOpts {
  return { base: "busybox", layer: [], selector: [], port: [], env: [], start: true, wait: true, ...over };
}
