/**
 * Lab spec files: YAML in, a validated and expanded `LabSpec` plus a digest
 * out. Every problem is collected with its position and reported together
 * ("lab.yaml:12:5: machine 'web' joins unknown network 'backend'"), so a user
 * fixes a file in one round. The format is documented in docs/labs.md.
 * Pure: no I/O (file `source:` references are inlined by the CLI: cli/labs/inline-files.ts).
 */

import { LineCounter, parseDocument } from "yaml";
import { durationSeconds } from "../../common/duration.js";
import { invalidArgument } from "../../common/errors.js";
import { isValidName } from "../../common/names.js";
import { digestOf } from "./canonical.js";
import { expandMachineName } from "./expand.js";
import {
  contains,
  formatIPv4,
  formatSubnet,
  gatewayOf,
  isReserved,
  parseIPv4,
  type Subnet,
  usableCount,
} from "./ipv4.js";
import { nameRule } from "./name-rule.js";
import { type MachineTemplate, readMachine } from "./parse-machine.js";
import { type NetworkDef, readNetworks } from "./parse-networks.js";
import type { LabMachineSpec, LabSpec, LabSpecIssue } from "./spec-types.js";
import { join, type SpecNode, SpecReader } from "./yaml-reader.js";

export { MAX_NETWORKS } from "./parse-networks.js";

export type LabSpecResult =
  | { ok: true; spec: LabSpec; digest: string }
  | { ok: false; issues: LabSpecIssue[] };

const TOP_FIELDS = ["name", "description", "networks", "machines", "ttl"] as const;
/** Machines after expansion (counts and ranges): the controller refuses before building more. */
export const MAX_MACHINES = 1000;

/**
 * Parses and validates a lab spec. Never throws for a bad file: the result
 * lists every issue, sorted by position. `loadLabSpec` is the throwing form.
 */
export function parseLabSpec(text: string): LabSpecResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lines,
    merge: true,
    keepSourceTokens: true,
    uniqueKeys: true,
  });
  const syntax: LabSpecIssue[] = doc.errors.map((e) => ({
    line: e.linePos?.[0].line ?? 0,
    col: e.linePos?.[0].col ?? 0,
    path: "",
    message: firstLine(e.message),
  }));
  if (syntax.length > 0) return { ok: false, issues: syntax };

  // anchors, aliases and merges resolved by the yaml library, within its alias limit
  const r = SpecReader.open(doc, lines);
  if (!(r instanceof SpecReader)) return { ok: false, issues: [r] };
  const root = r.rootNode;
  if (r.isNull(root)) {
    r.error(root, "", "the lab spec is empty; it needs at least a name and machines");
    return { ok: false, issues: r.issues };
  }
  // `x-` keys are free (as in compose files): a place to keep YAML anchors for `<<:` merges.
  const all = r.entries(root, "", "a lab spec");
  if (!all) return { ok: false, issues: r.issues };
  const entries = all.filter((e) => !e.key.startsWith("x-"));
  r.checkKeys(entries, TOP_FIELDS, "", "the lab spec");
  const get = (k: string) => entries.find((e) => e.key === k);

  let lab = "";
  const nameE = get("name");
  if (!nameE) r.error(root, "name", "the lab spec needs a name");
  else {
    const s = r.str(nameE.value, "name", "lab name");
    if (s !== undefined && !isValidName(s)) r.error(nameE.value, "name", nameRule("lab", s));
    else if (s !== undefined) lab = s;
  }
  const descE = get("description");
  const description =
    descE && !r.isNull(descE.value) ? (r.str(descE.value, "description", "description") ?? "") : "";

  const ttlE = get("ttl");
  const ttl = ttlE && !r.isNull(ttlE.value) ? durationSeconds(r.text(ttlE.value)) : 0;
  if (ttl === undefined) r.error(ttlE!.value, "ttl", "ttl must be a duration like 90s, 30m, 2h or 1d");
  const networks = readNetworks(r, get("networks")?.value ?? null);
  const machinesE = get("machines");
  const templates = machinesE ? readMachines(r, machinesE.value) : [];
  if (!machinesE) r.error(root, "machines", "the lab spec needs machines");

  const machines = lab ? expandAll(r, lab, templates) : [];
  checkMembership(r, networks, templates, machines);

  if (r.issues.length > 0) return { ok: false, issues: sortIssues(r.issues) };
  const spec: LabSpec = {
    name: lab,
    description,
    networks: networks.map((n) => ({ name: n.name, subnet: formatSubnet(n.subnet) })),
    machines,
    ...(ttl ? { ttlSeconds: ttl } : {}),
  };
  return { ok: true, spec, digest: labSpecDigest(spec) };
}

/** Parses a spec or throws INVALID_ARGUMENT (reason INVALID_LAB_SPEC) listing every issue. */
export function loadLabSpec(text: string, file = "lab.yaml"): { spec: LabSpec; digest: string } {
  const res = parseLabSpec(text);
  if (res.ok) return { spec: res.spec, digest: res.digest };
  const lines = formatIssues(res.issues, file);
  const count = res.issues.length;
  throw invalidArgument(
    `${file}: ${count} problem${count === 1 ? "" : "s"} in the lab spec\n${lines.join("\n")}`,
    {
      reason: "INVALID_LAB_SPEC",
      subject: `lab/${file}`,
      hint: "fix the lines above; the format is described in docs/labs.md",
      output: lines.join("\n"),
    },
  );
}

/** "lab.yaml:12:5: message" per issue, like a compiler. */
export function formatIssues(issues: LabSpecIssue[], file = "lab.yaml"): string[] {
  return issues.map((i) =>
    i.line > 0 ? `${file}:${i.line}:${i.col}: ${i.message}` : `${file}: ${i.message}`,
  );
}

/** Digest of the whole (expanded) spec: equal digests mean nothing to apply. */
export function labSpecDigest(spec: LabSpec): string {
  return digestOf(spec);
}

// ---------------------------------------------------------------- networks

function readMachines(r: SpecReader, node: SpecNode | null): MachineTemplate[] {
  const out: MachineTemplate[] = [];
  if (r.isNull(node)) {
    r.error(node, "machines", "machines is empty; a lab needs at least one machine");
    return out;
  }
  if (r.isSeq(node)) {
    (r.items(node, "machines", "machines") ?? []).forEach((it, i) => {
      const p = join("machines", i);
      const es = r.entries(it, p, "a machine");
      if (!es) return;
      const nameE = es.find((e) => e.key === "name");
      if (!nameE) {
        r.error(it, p, "a machine needs a name");
        return;
      }
      const name = r.str(nameE.value, join(p, "name"), "machine name");
      if (name === undefined) return;
      const m = readMachine(r, name, nameE.value ?? it, es, p);
      if (m) out.push(m);
    });
    return out;
  }
  for (const e of r.entries(node, "machines", "machines (a list, or a mapping of name to machine)") ?? []) {
    const p = join("machines", e.key);
    if (r.isNull(e.value)) {
      r.error(e.keyNode, p, `machine '${e.key}' needs at least a base`);
      continue;
    }
    const es = r.entries(e.value, p, `machine '${e.key}'`);
    if (!es) continue;
    if (es.some((x) => x.key === "name")) {
      r.error(
        es.find((x) => x.key === "name")!.keyNode,
        p,
        "in the mapping form the key is the machine name; drop 'name'",
      );
      continue;
    }
    const m = readMachine(r, e.key, e.keyNode, es, p);
    if (m) out.push(m);
  }
  return out;
}

/** Expands counts and ranges, validates every resulting machine and env name, and applies per-index offsets. */
function expandAll(r: SpecReader, lab: string, templates: MachineTemplate[]): LabMachineSpec[] {
  const out: LabMachineSpec[] = [];
  const owner = new Map<string, string>();
  for (const t of templates) {
    const path = join("machines", t.template);
    const res = expandMachineName(t.template, t.count);
    if (!res.ok) {
      r.error(
        res.error.startsWith("count") ? (t.countNode ?? t.templateNode) : t.templateNode,
        path,
        res.error,
      );
      continue;
    }
    if (out.length + res.names.length > MAX_MACHINES) {
      // refused before building the machines, so a file of many large counts costs nothing
      r.error(
        t.countNode ?? t.templateNode,
        path,
        `the lab expands to more than ${MAX_MACHINES} machines (at '${t.template}'); at most ${MAX_MACHINES} are allowed`,
      );
      return out;
    }
    for (const { name, index } of res.names) {
      const shown = name === t.template ? `'${name}'` : `'${name}' (from '${t.template}')`;
      if (!isValidName(name)) {
        r.error(t.templateNode, path, nameRule("machine", name, shown));
        break;
      }
      const envName = `${lab}-${name}`;
      const envLength = envName.length;
      if (!isValidName(envName)) {
        r.error(
          t.templateNode,
          path,
          `machine ${shown} makes env name '${envName}' (${envLength} characters), above the 63 allowed; shorten the lab or machine name`,
        );
        break;
      }
      const prev = owner.get(name);
      if (prev !== undefined) {
        r.error(t.templateNode, path, `machine name '${name}' is used twice (also from '${prev}')`);
        break;
      }
      owner.set(name, t.template);
      const offset = Math.max(index, 1) - 1;
      out.push({
        name,
        envName,
        template: t.template,
        index,
        // cloned so that callers may edit one machine without touching its siblings
        ...structuredClone({
          base: t.base,
          layers: t.layers,
          boot: t.boot,
          privileged: t.privileged,
          resources: t.resources,
          node: t.node,
          nodeSelector: t.nodeSelector,
          env: t.env,
          files: t.files,
          startup: t.startup,
        }),
        networks: t.networks.map((n) => {
          const a = n.address === undefined ? undefined : parseIPv4(n.address.replace(/\/\d+$/, ""));
          return a === undefined
            ? { network: n.network }
            : { network: n.network, address: formatIPv4(a + offset) };
        }),
        ports: t.ports.map((p) => ({
          protocol: p.protocol,
          hostPort: p.hostPort + offset,
          containerPort: p.containerPort,
        })),
      });
    }
  }
  return out;
}

/**
 * Cross-checks between machines and networks: known networks, fixed
 * addresses inside the subnet, not reserved and unique, room for every
 * member, and host ports used once per protocol across the lab.
 */
function checkMembership(
  r: SpecReader,
  networks: NetworkDef[],
  templates: MachineTemplate[],
  machines: LabMachineSpec[],
): void {
  const byName = new Map(networks.map((n) => [n.name, n]));
  const used = new Map<string, Map<number, string>>(networks.map((n) => [n.name, new Map()]));
  for (const t of templates) {
    const path = join("machines", t.template);
    const expanded = machines.filter((m) => m.template === t.template);
    const n = Math.max(expanded.length, 1);
    for (const ref of t.networks) {
      const p = join(join(path, "networks"), ref.network);
      const net = byName.get(ref.network);
      if (!net) {
        const known = networks.map((x) => x.name);
        r.error(
          ref.node,
          p,
          `machine '${t.template}' joins unknown network '${ref.network}'${knownList(known)}`,
        );
        continue;
      }
      if (ref.address === undefined) continue;
      const m = /^(.*?)(?:\/(\d{1,2}))?$/.exec(ref.address)!;
      const addr = parseIPv4(m[1]!);
      if (addr === undefined) {
        r.error(ref.addressNode, p, `address '${ref.address}' is not an IPv4 address`);
        continue;
      }
      if (m[2] !== undefined && Number(m[2]) !== net.subnet.prefix) {
        r.error(
          ref.addressNode,
          p,
          `address '${ref.address}' has prefix /${m[2]} but network '${net.name}' is ${formatSubnet(net.subnet)}`,
        );
        continue;
      }
      for (let i = 0; i < n; i++) {
        const a = addr + i;
        const shown = formatIPv4(a);
        const who = expanded[i]?.name ?? t.template;
        const range = n > 1 ? ` (machine '${who}' gets ${shown})` : "";
        if (!contains(net.subnet, a)) {
          r.error(
            ref.addressNode,
            p,
            `address ${shown}${range} is outside ${formatSubnet(net.subnet)} of network '${net.name}'`,
          );
          break;
        }
        if (isReserved(net.subnet, a)) {
          r.error(
            ref.addressNode,
            p,
            `address ${shown}${range} is reserved in ${formatSubnet(net.subnet)} (${reservedWhat(net.subnet, a)})`,
          );
          break;
        }
        const taken = used.get(net.name)!.get(a);
        if (taken !== undefined) {
          r.error(
            ref.addressNode,
            p,
            `address ${shown} on network '${net.name}' is already given to machine '${taken}'`,
          );
          break;
        }
        used.get(net.name)!.set(a, who);
      }
    }
  }
  for (const net of networks) {
    const members = machines.filter((m) => m.networks.some((x) => x.network === net.name)).length;
    if (members > usableCount(net.subnet)) {
      r.error(
        net.node,
        join("networks", net.name),
        `network '${net.name}' has ${members} machines but ${formatSubnet(net.subnet)} holds only ${usableCount(net.subnet)}`,
      );
    }
  }
  const ports = new Map<string, string>();
  for (const t of templates) {
    const path = join("machines", t.template);
    const expanded = machines.filter((m) => m.template === t.template);
    if (t.ports.length > 0 && t.networks.length === 0) {
      r.error(
        t.ports[0]!.node,
        join(path, "ports"),
        `machine '${t.template}' forwards ports but joins no network`,
      );
    }
    t.ports.forEach((p, i) => {
      expanded.forEach((m, k) => {
        const host = p.hostPort + k;
        const key = `${p.protocol}/${host}`;
        const shown = expanded.length > 1 ? ` (machine '${m.name}' gets ${host})` : "";
        if (host > 65535)
          r.error(p.node, join(join(path, "ports"), i), `host port ${host}${shown} is above 65535`);
        else if (ports.has(key)) {
          r.error(
            p.node,
            join(join(path, "ports"), i),
            `host port ${key}${shown} is already forwarded to machine '${ports.get(key)}'`,
          );
        } else ports.set(key, m.name);
      });
    });
  }
}

function reservedWhat(s: Subnet, a: number): string {
  if (a === s.network) return "network address";
  if (a === gatewayOf(s)) return "gateway, kept for the host side";
  return "broadcast address";
}

function knownList(names: string[]): string {
  return names.length === 0 ? " (the lab defines no networks)" : ` (known: ${names.join(", ")})`;
}

function sortIssues(issues: LabSpecIssue[]): LabSpecIssue[] {
  return [...issues].sort((a, b) => a.line - b.line || a.col - b.col);
}

function firstLine(s: string): string {
  return s.split("\n")[0]!.trim();
}
