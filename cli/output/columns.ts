/**
 * What each listing shows: table columns (wide ones marked), the name for
 * `-q`, and the canonical JSON for `-o json|yaml`.
 */
import { formatSeconds } from "../../common/duration.js";
import {
  Base,
  baseVersionStateToJSON,
  Env,
  Event,
  envPhaseToJSON,
  Lab,
  Layer,
  labPhaseToJSON,
  Node,
  networkModeToJSON,
  nodeStateToJSON,
  recipeKindToJSON,
} from "../../proto/gen/protoctl/v1/types.js";
import { age, bytes, enumLabel, type ListSpec, labels } from "./format.js";

export function envPhase(env: Env): string {
  return enumLabel(envPhaseToJSON(env.status?.phase ?? 0), "ENV_PHASE_");
}

export const nodeList: ListSpec<Node> = {
  name: (n) => n.name,
  toJSON: (n) => Node.toJSON(n),
  columns: [
    { header: "NAME", get: (n) => n.name },
    {
      header: "STATUS",
      get: (n) => {
        const s = enumLabel(nodeStateToJSON(n.state), "NODE_STATE_");
        const extra = [n.cordoned ? "SchedulingDisabled" : "", n.draining ? "Draining" : ""].filter(Boolean);
        return [s, ...extra].join(",");
      },
    },
    { header: "ENVS", get: (n) => String(n.capacity?.envs ?? 0) },
    {
      header: "POOL",
      get: (n) =>
        n.capacity?.poolSizeBytes
          ? `${bytes(n.capacity.poolSizeBytes - n.capacity.poolFreeBytes)}/${bytes(n.capacity.poolSizeBytes)}`
          : "-",
    },
    { header: "AGE", get: (n) => age(n.joinedMs) },
    { header: "ADDRESS", get: (n) => n.address || "-", wide: true },
    { header: "CPUS", get: (n) => String(n.capacity?.cpus ?? 0), wide: true },
    { header: "MEMORY", get: (n) => bytes(n.capacity?.memoryBytes), wide: true },
    { header: "VERSION", get: (n) => n.agentVersion || "-", wide: true },
    { header: "LABELS", get: (n) => labels(n.labels), wide: true },
  ],
};

export const baseList: ListSpec<Base> = {
  name: (b) => b.name,
  toJSON: (b) => Base.toJSON(b),
  columns: [
    { header: "NAME", get: (b) => b.name },
    { header: "LATEST", get: (b) => (b.latest ? `@${b.latest}` : "-") },
    { header: "VERSIONS", get: (b) => String(b.versions.length) },
    { header: "SIZE", get: (b) => bytes(latestVersion(b)?.sizeBytes) },
    { header: "NODES", get: (b) => String(latestVersion(b)?.nodes.length ?? 0) },
    { header: "AGE", get: (b) => age(latestVersion(b)?.createdMs) },
    {
      header: "STATE",
      get: (b) => {
        const v = latestVersion(b);
        return v ? enumLabel(baseVersionStateToJSON(v.state), "BASE_VERSION_STATE_") : "-";
      },
      wide: true,
    },
    { header: "SOURCE", get: (b) => latestVersion(b)?.source || "-", wide: true },
    { header: "USERS", get: (b) => String(latestVersion(b)?.users.length ?? 0), wide: true },
    {
      // versions nodes report that the controller never sealed (or copies not matching the seal)
      header: "FOREIGN",
      get: (b) => {
        const refs = b.versions
          .filter((v) => v.foreign || v.foreignNodes.length > 0)
          .map((v) => `@${v.version}(${v.foreignNodes.join(",")})`);
        return refs.length ? refs.join(" ") : "-";
      },
    },
  ],
};

function latestVersion(b: Base) {
  return b.versions.find((v) => v.version === b.latest) ?? b.versions.filter((v) => !v.foreign).at(-1);
}

export const layerList: ListSpec<Layer> = {
  name: (l) => l.name,
  toJSON: (l) => Layer.toJSON(l),
  columns: [
    { header: "NAME", get: (l) => l.name },
    { header: "KIND", get: (l) => enumLabel(recipeKindToJSON(l.kind), "RECIPE_KIND_") },
    { header: "BUILDS", get: (l) => String(l.builds.length) },
    { header: "AGE", get: (l) => age(l.createdMs) },
    { header: "DIGEST", get: (l) => (l.digest ? l.digest.slice(0, 12) : "-"), wide: true },
    { header: "PARENTS", get: (l) => l.parents.join(",") || "-", wide: true },
    { header: "BUILT-ON", get: (l) => l.builds.map((b) => b.base).join(",") || "-", wide: true },
  ],
};

export const envList: ListSpec<Env> = {
  name: (e) => e.spec?.name ?? "",
  toJSON: (e) => Env.toJSON(e),
  columns: [
    { header: "NAME", get: (e) => e.spec?.name ?? "" },
    { header: "STATUS", get: envPhase },
    {
      header: "BASE",
      get: (e) => {
        const v = e.status?.baseVersion || e.spec?.base?.version || 0;
        return e.spec?.base ? `${e.spec.base.name}${v ? `@${v}` : ""}` : "-";
      },
    },
    { header: "NODE", get: (e) => e.status?.node || "-" },
    { header: "AGE", get: (e) => age(e.status?.createdMs) },
    { header: "TTL", get: (e) => timeLeft(e.spec?.expiresMs) },
    { header: "LAYERS", get: (e) => e.spec?.layers.join(",") || "-", wide: true },
    {
      header: "NETWORK",
      get: (e) => enumLabel(networkModeToJSON(e.spec?.network?.mode ?? 0), "NETWORK_MODE_"),
      wide: true,
    },
    { header: "ADDRESSES", get: (e) => e.status?.addresses.join(",") || "-", wide: true },
    { header: "BOOT", get: (e) => (e.spec?.boot ? "yes" : "no"), wide: true },
    { header: "MESSAGE", get: (e) => e.status?.message || "-", wide: true },
  ],
};

export const labList: ListSpec<Lab> = {
  name: (l) => l.name,
  toJSON: (l) => Lab.toJSON(l),
  columns: [
    { header: "NAME", get: (l) => l.name },
    { header: "STATUS", get: (l) => enumLabel(labPhaseToJSON(l.phase), "LAB_PHASE_") },
    { header: "MACHINES", get: (l) => String(l.machines.length) },
    { header: "NETWORKS", get: (l) => String(l.networks.length) },
    { header: "AGE", get: (l) => age(l.createdMs) },
    { header: "NODES", get: (l) => [...new Set(l.machines.map((m) => m.node))].join(",") || "-", wide: true },
    { header: "MESSAGE", get: (l) => l.message || "-", wide: true },
  ],
};

export const eventList: ListSpec<Event> = {
  name: (e) => e.subject,
  toJSON: (e) => Event.toJSON(e),
  columns: [
    { header: "TIME", get: (e) => new Date(e.timeMs).toISOString() },
    { header: "KIND", get: (e) => e.kind },
    { header: "SUBJECT", get: (e) => e.subject },
    { header: "MESSAGE", get: (e) => e.message },
  ],
};

/** Time left before expiry ("-" when none, "expired" once due and not yet deleted). */
export function timeLeft(expiresMs: number | undefined, now = Date.now()): string {
  if (!expiresMs) return "-";
  const s = (expiresMs - now) / 1000;
  return s <= 0 ? "expired" : formatSeconds(s);
}
