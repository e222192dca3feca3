/**
 * `protoctl doctor`'s control-plane rows: what the local `up` runs (read from
 * its state dir's run/children.json, the supervisor's command lines) and the
 * CLI's current context, judged for insecure or weakened set-ups. Every row
 * is a warning, never a failure: the host can still run protoctl, but the
 * operator should know what anyone on this machine (or an env) could reach.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import type { HostCheck } from "../../common/host-checks.js";
import type { ResolvedContext } from "../config/contexts.js";
import { type ChildrenFile, readJson, StatePaths } from "./state.js";

function row(name: string, ok: boolean, detail: string, fix: string): HostCheck {
  return { name, group: "security", required: false, ok, detail, fix: ok ? "" : fix };
}

const argAfter = (args: string[], flag: string) => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};

const MIGRATE = "protoctl down --keep && protoctl up (a new `up` migrates the state dir)";

/** Rows for the `up` state dir, none when no `up` state is readable there. */
export function upStateChecks(stateDir: string): HostCheck[] {
  const paths = new StatePaths(stateDir);
  const file = readJson<ChildrenFile>(paths.childrenFile);
  if (!file) return [];
  const out: HostCheck[] = [];
  const etcd = file.children.find((c) => c.name === "etcd")?.args ?? [];
  const controller = file.children.find((c) => c.name === "controller")?.args ?? [];
  const agent = file.children.find((c) => c.name === "agent")?.args;

  const etcdUrl = argAfter(etcd, "--listen-client-urls") ?? "";
  const etcdPrivate = etcdUrl.startsWith("https://") && etcd.includes("--client-cert-auth");
  out.push(
    row(
      "etcd-access",
      etcdPrivate,
      etcdPrivate
        ? `etcd requires client certificates (${etcdUrl})`
        : `etcd serves ${etcdUrl || "?"} without client certificates: any local user or env on the host network reads and writes the cluster state`,
      MIGRATE,
    ),
  );

  const caOnDisk = argAfter(controller, "--ca-store") === "disk";
  const keyFile = join(paths.controllerDir, "ca", "ca.key");
  let keyMode: number | undefined;
  try {
    keyMode = statSync(keyFile).mode & 0o777;
  } catch {
    keyMode = undefined;
  }
  out.push(
    !caOnDisk
      ? row(
          "ca-key",
          false,
          "the cluster CA key is kept in etcd: whoever reads etcd can sign an admin certificate",
          MIGRATE,
        )
      : row(
          "ca-key",
          keyMode === 0o600,
          keyMode === undefined
            ? `the CA key ${keyFile} is missing`
            : `the CA key is on disk, ${keyFile} mode ${keyMode.toString(8).padStart(4, "0")}`,
          `chmod 600 ${keyFile}`,
        ),
  );

  let rootMode: number | undefined;
  try {
    rootMode = statSync(paths.root).mode & 0o777;
  } catch {
    rootMode = undefined;
  }
  out.push(
    row(
      "state-dir",
      rootMode === 0o700,
      `${paths.root} mode ${rootMode?.toString(8).padStart(4, "0") ?? "?"}`,
      `chmod 700 ${paths.root}`,
    ),
  );

  const plaintext = controller.includes("--insecure") || (agent?.includes("--insecure") ?? false);
  out.push(
    row(
      "control-tls",
      !plaintext,
      plaintext
        ? "INSECURE: the controller and agent serve plaintext without authentication (up --insecure)"
        : "controller and agent: mutual TLS",
      "protoctl down --keep && protoctl up (without --insecure)",
    ),
  );
  return out;
}

/** A row for the CLI's current context when it talks plaintext. */
export function contextCheck(ctx: ResolvedContext | undefined): HostCheck[] {
  if (!ctx || ctx.source === "default") return [];
  return [
    row(
      "cli-context",
      !ctx.insecure,
      ctx.insecure
        ? `INSECURE: context ${JSON.stringify(ctx.name)} talks plaintext to ${ctx.controller}`
        : `context ${JSON.stringify(ctx.name)}: TLS to ${ctx.controller}`,
      "use a context with the cluster's CA and a client certificate (protoctl context add)",
    ),
  ];
}
