/**
 * Where the CLI's config file is: $PROTOCTL_CONFIG, else
 * $XDG_CONFIG_HOME/protoctl/config.yaml, else ~/.config/protoctl/config.yaml.
 * Node's own modules only: the fast entry (cli/fast) reads it too.
 */
import { homedir } from "node:os";
import { join } from "node:path";

export function configPath(env: Record<string, string | undefined> = process.env): string {
  if (env.PROTOCTL_CONFIG) return env.PROTOCTL_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(base, "protoctl", "config.yaml");
}
