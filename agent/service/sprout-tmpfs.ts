import { mkdir } from "node:fs/promises";
import { run } from "../../common/exec.js";
import { findMount } from "../host/pool/mounts.js";

/**
 * Mounts the sprouts' tmpfs (of `bytes`) at `dir` at the first attach, unless
 * it is (a restarted agent finds it with its sprouts in use); it stays until
 * PropagationService.destroy. No `dir`: sprouts live in the attachments' dirs.
 */
export async function mountSproutTmpfs(dir: string | undefined, bytes: number | undefined): Promise<void> {
  if (!dir) return;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if ((await findMount(dir))?.fstype === "tmpfs") return;
  await run("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=0700`, "tmpfs", dir]);
}
