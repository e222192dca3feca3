/**
 * Whether an env runs without a user namespace (root inside = root on the
 * host). Envs are unprivileged by default (systemd-nspawn
 * `--private-users=pick --private-users-ownership=map`: idmapped mounts on the
 * btrfs snapshot). Privileged only when asked (`--privileged`, lab
 * `privileged: true`) or when the root is an overlayfs (layers): overlayfs
 * cannot be idmapped on the kernels checked (6.18: nspawn says "ID mapped
 * mounts are apparently not available"), and chown-ing an overlay would copy
 * every file up. One rule, used by the agent and shown by the CLI.
 */
export interface PrivilegeInput {
  privileged: boolean;
  layers: readonly string[];
}

export type Isolation = "user-namespace" | "privileged" | "privileged-layered";

export function isolationOf(spec: PrivilegeInput): Isolation {
  if (spec.privileged) return "privileged";
  if (spec.layers.length > 0) return "privileged-layered";
  return "user-namespace";
}

export function runsPrivileged(spec: PrivilegeInput): boolean {
  return isolationOf(spec) !== "user-namespace";
}

/** A sentence for `env describe`. */
export function isolationText(i: Isolation): string {
  switch (i) {
    case "privileged":
      return "privileged (asked for): no user namespace, root inside is root on the host";
    case "privileged-layered":
      return "privileged (layered env: overlayfs roots cannot be idmapped yet): no user namespace";
    default:
      return "user namespace: root inside maps to an unprivileged uid range on the host";
  }
}
