/**
 * The `networks:` section of a lab spec (parse-spec.ts): names, subnets and
 * their overlaps, each problem reported with its position.
 */
import { isValidName } from "../../common/names.js";
import { formatSubnet, overlaps, parseSubnet, type Subnet, specialRange } from "./ipv4.js";
import { nameRule } from "./name-rule.js";
import { join, type SpecNode, type SpecReader } from "./yaml-reader.js";

/** Networks one lab may define. */
export const MAX_NETWORKS = 256;

export interface NetworkDef {
  name: string;
  subnet: Subnet;
  node: SpecNode;
}

export function readNetworks(r: SpecReader, node: SpecNode | null): NetworkDef[] {
  if (r.isNull(node)) return [];
  const raw: Array<{
    name: string | undefined;
    nameNode: SpecNode;
    subnet: SpecNode | null;
    itemNode: SpecNode;
    path: string;
  }> = [];
  if (r.isSeq(node)) {
    (r.items(node, "networks", "networks") ?? []).forEach((it, i) => {
      const p = join("networks", i);
      const es = r.entries(it, p, "a network");
      if (!es) return;
      r.checkKeys(es, ["name", "subnet"], p, "a network");
      const nameE = es.find((e) => e.key === "name");
      if (!nameE) r.error(it, p, "a network needs a name");
      else
        raw.push({
          name: r.str(nameE.value, join(p, "name"), "network name"),
          nameNode: nameE.value ?? it,
          subnet: es.find((e) => e.key === "subnet")?.value ?? null,
          itemNode: it,
          path: p,
        });
    });
  } else {
    for (const e of r.entries(node, "networks", "networks") ?? []) {
      const p = join("networks", e.key);
      let subnet: SpecNode | null = e.value;
      if (r.isMap(e.value)) {
        const es = r.entries(e.value, p, "a network") ?? [];
        r.checkKeys(es, ["subnet"], p, `network '${e.key}'`);
        subnet = es.find((x) => x.key === "subnet")?.value ?? null;
      }
      raw.push({ name: e.key, nameNode: e.keyNode, subnet, itemNode: e.value ?? e.keyNode, path: p });
    }
  }
  const out: NetworkDef[] = [];
  if (raw.length > MAX_NETWORKS) {
    r.error(node, "networks", `the lab defines ${raw.length} networks; at most ${MAX_NETWORKS} are allowed`);
    return out;
  }
  for (const n of raw) {
    if (n.name === undefined) continue;
    if (!isValidName(n.name)) {
      r.error(n.nameNode, n.path, nameRule("network", n.name));
      continue;
    }
    if (out.some((o) => o.name === n.name)) {
      r.error(n.nameNode, n.path, `network '${n.name}' is defined twice`);
      continue;
    }
    if (r.isNull(n.subnet)) {
      r.error(
        n.subnet ?? n.itemNode,
        join(n.path, "subnet"),
        `network '${n.name}' needs a subnet (CIDR, e.g. 10.10.1.0/24)`,
      );
      continue;
    }
    const text = r.str(n.subnet, join(n.path, "subnet"), "subnet");
    if (text === undefined) continue;
    const parsed = parseSubnet(text);
    if (!parsed.ok) {
      r.error(n.subnet, join(n.path, "subnet"), `network '${n.name}': ${parsed.error}`);
      continue;
    }
    const special = specialRange(parsed.subnet);
    if (special) {
      r.error(n.subnet, join(n.path, "subnet"), `network '${n.name}': subnet ${text} overlaps ${special}`);
      continue;
    }
    const clash = out.find((o) => overlaps(o.subnet, parsed.subnet));
    if (clash) {
      r.error(
        n.subnet,
        join(n.path, "subnet"),
        `subnet ${text} of network '${n.name}' overlaps ${formatSubnet(clash.subnet)} of network '${clash.name}'`,
      );
      continue;
    }
    out.push({ name: n.name, subnet: parsed.subnet, node: n.nameNode });
  }
  return out;
}

// ---------------------------------------------------------------- machines
