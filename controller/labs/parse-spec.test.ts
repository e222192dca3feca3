import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import { formatIssues, loadLabSpec, parseLabSpec } from "./parse-spec.js";

/** The first ```yaml block of docs/labs.md: the documented example must stay valid. */
function docExample(): string {
  const md = readFileSync(new URL("../../docs/labs.md", import.meta.url), "utf8");
  return /```yaml\n([\s\S]*?)```/.exec(md)![1]!;
}

function errorsOf(text: string): string[] {
  const r = parseLabSpec(text);
  if (r.ok) throw new Error("expected the spec to be refused");
  return formatIssues(r.issues);
}

describe("parseLabSpec: good specs", () => {
  it("parses the example of docs/labs.md", () => {
    const r = parseLabSpec(docExample());
    if (!r.ok) throw new Error(formatIssues(r.issues).join("\n"));
    const { spec } = r;
    expect(spec.name).toBe("shop");
    expect(spec.networks).toEqual([
      { name: "front", subnet: "10.20.1.0/24" },
      { name: "back", subnet: "10.20.2.0/24" },
    ]);
    expect(spec.machines.map((m) => m.name)).toEqual(["lb", "web-1", "web-2", "web-3", "db-1", "db-2"]);
    const [lb, web1, , web3, db1] = spec.machines;
    expect(lb!.envName).toBe("shop-lb");
    expect(lb!.base).toEqual({ name: "debian-bookworm", version: 3 });
    expect(lb!.boot).toBe(true); // from the merged anchor
    expect(lb!.resources).toEqual({ memoryBytes: 512 * 2 ** 20, cpus: 1, pids: 1024, diskBytes: 0 });
    expect(lb!.node).toBe("n1");
    expect(lb!.ports).toEqual([
      { protocol: "tcp", hostPort: 8080, containerPort: 80 },
      { protocol: "tcp", hostPort: 8443, containerPort: 443 },
    ]);
    expect(lb!.files).toEqual([{ path: "/etc/haproxy/haproxy.cfg", mode: 0o644, source: "./haproxy.cfg" }]);
    expect(web1!.layers).toEqual(["nginx", "app"]);
    expect(web1!.env).toEqual({ APP_ENV: "staging", WORKERS: "4" });
    expect(web1!.nodeSelector).toEqual({ zone: "a" });
    expect(web1!.networks).toEqual([{ network: "front" }, { network: "back", address: "10.20.2.21" }]);
    expect(web3!.networks[1]).toEqual({ network: "back", address: "10.20.2.23" });
    expect(web3!.template).toBe("web");
    expect(web3!.index).toBe(3);
    expect(db1!.base).toEqual({ name: "debian-bookworm", version: 0 });
    expect(db1!.resources.memoryBytes).toBe(2 * 2 ** 30);
    expect(Buffer.from(db1!.files[0]!.contentBase64!, "base64").toString()).toBe("lab shop database\n");
    expect(r.digest).toMatch(/^[0-9a-f]{64}$/);
  });

  it("accepts the list forms and gives the same digest as the mapping forms", () => {
    const asMap = `
name: l
networks:
  net: 10.0.0.0/24
machines:
  web:
    base: deb
    count: 2
    networks: { net: }
`;
    const asList = `
# comments and key order do not matter
name: l
machines:
  - networks: [net]
    name: web-{1..2}
    base: deb
networks:
  - { name: net, subnet: 10.0.0.0/24 }
`;
    const a = parseLabSpec(asMap);
    const b = parseLabSpec(asList);
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    // The template differs ("web" vs "web-{1..2}"), so the whole-spec digest differs; the machines do not.
    expect(a.spec.machines.map((m) => m.name)).toEqual(b.spec.machines.map((m) => m.name));
    const strip = (s: typeof a.spec) => s.machines.map(({ template: _t, ...m }) => m);
    expect(strip(a.spec)).toEqual(strip(b.spec));
  });

  it("gives the same digest for the same content written differently", () => {
    const one = "name: l\nmachines:\n  m: { base: deb, env: { A: '1', B: x } }\n";
    const two = "# hi\nmachines:\n  m:\n    env:\n      B: x\n      A: 1\n    base: deb\nname: l\n";
    const a = parseLabSpec(one);
    const b = parseLabSpec(two);
    expect(a.ok && b.ok && a.digest === b.digest).toBe(true);
    const c = parseLabSpec(one.replace("x }", "y }"));
    expect(c.ok && a.ok && c.digest !== a.digest).toBe(true);
  });

  it("reads modes as octal and ports in every form", () => {
    const r = parseLabSpec(`
name: l
networks: { n: 10.1.0.0/16 }
machines:
  m:
    base: deb
    networks: [n]
    files:
      - { path: /a, content: x, mode: 0755 }
      - { path: /b, content: x, mode: "0600" }
      - { path: /c, content: x, mode: 0o640 }
      - { path: /d, content: aGk=, encoding: base64 }
    ports:
      - "53:53/udp"
      - { host: 2222, container: 22 }
`);
    if (!r.ok) throw new Error(formatIssues(r.issues).join("\n"));
    const m = r.spec.machines[0]!;
    expect(m.files.map((f) => f.mode)).toEqual([0o755, 0o600, 0o640, 0o644]);
    expect(m.files[3]!.contentBase64).toBe("aGk=");
    expect(m.ports).toEqual([
      { protocol: "udp", hostPort: 53, containerPort: 53 },
      { protocol: "tcp", hostPort: 2222, containerPort: 22 },
    ]);
  });

  it("reads privileged per machine, false by default", () => {
    const r = parseLabSpec("name: p\nmachines:\n  a: { base: x, privileged: true }\n  b: { base: x }\n");
    if (!r.ok) throw new Error(formatIssues(r.issues).join("\n"));
    expect(r.spec.machines.map((m) => [m.name, m.privileged])).toEqual([
      ["a", true],
      ["b", false],
    ]);
    expect(errorsOf("name: p\nmachines:\n  a: { base: x, privileged: maybe }\n")[0]).toMatch(
      /privileged must be true or false/,
    );
  });
  it("offsets host ports of counted machines", () => {
    const r = parseLabSpec(
      "name: l\nnetworks: {n: 10.0.0.0/24}\nmachines:\n  w: { base: b, count: 3, networks: [n], ports: ['8080:80'] }\n",
    );
    expect(r.ok && r.spec.machines.map((m) => m.ports[0]!.hostPort)).toEqual([8080, 8081, 8082]);
  });
});

describe("parseLabSpec: bad specs, with positions", () => {
  it("collects every problem with its line and column (the example of docs/labs.md)", () => {
    const md = readFileSync(new URL("../../docs/labs.md", import.meta.url), "utf8");
    const [, bad, expected] = /This file:\n\n```yaml\n([\s\S]*?)```[\s\S]*?```\n([\s\S]*?)```/.exec(md)!;
    expect(errorsOf(bad!)).toEqual(expected!.trimEnd().split("\n"));
    expect(errorsOf(bad!)).toHaveLength(4);
  });

  it("suggests the nearest field name", () => {
    expect(errorsOf("name: l\nmachines:\n  m:\n    base: b\n    layer: [x]\n")).toEqual([
      "lab.yaml:5:5: unknown field 'layer' in machine 'm' (did you mean 'layers'?)",
    ]);
  });

  it("checks every name, expanded names and env names", () => {
    const long = "a".repeat(60);
    const text = [
      "name: Shop", // 1
      "machines:", // 2
      "  Web: { base: b }", // 3
      `  ${long}: { base: b }`, // 4
      "  x_{1..2}: { base: b }", // 5
      "networks:", // 6
      "  Front: 10.0.0.0/24", // 7
    ].join("\n");
    expect(errorsOf(text)).toEqual([
      "lab.yaml:1:7: invalid lab name 'Shop': it may use only a-z, 0-9 and '-', starting with a letter or digit",
      "lab.yaml:7:3: invalid network name 'Front': it may use only a-z, 0-9 and '-', starting with a letter or digit",
    ]);
    // With a valid lab name, machine names are expanded and checked too.
    const withLab = text.replace("name: Shop", "name: shop");
    expect(errorsOf(withLab)).toEqual([
      "lab.yaml:3:3: invalid machine name 'Web': it may use only a-z, 0-9 and '-', starting with a letter or digit",
      `lab.yaml:4:3: machine '${long}' makes env name 'shop-${long}' (65 characters), above the 63 allowed; shorten the lab or machine name`,
      "lab.yaml:5:3: invalid machine name 'x_1' (from 'x_{1..2}'): it may use only a-z, 0-9 and '-', starting with a letter or digit",
      "lab.yaml:7:3: invalid network name 'Front': it may use only a-z, 0-9 and '-', starting with a letter or digit",
    ]);
  });

  it("refuses an expansion that reaches past 63 characters, for the machine or the env", () => {
    const w = (n: number) => "w".repeat(n);
    expect(errorsOf(`name: l\nmachines:\n  ${w(60)}-{9..10}: { base: b }\n`)).toEqual([
      `lab.yaml:3:3: machine '${w(60)}-9' (from '${w(60)}-{9..10}') makes env name 'l-${w(60)}-9' (64 characters), above the 63 allowed; shorten the lab or machine name`,
    ]);
    expect(errorsOf(`name: l\nmachines:\n  ${w(62)}-{10..11}: { base: b }\n`)).toEqual([
      `lab.yaml:3:3: invalid machine name '${w(62)}-10' (from '${w(62)}-{10..11}'): it is 65 characters, above 63`,
    ]);
  });

  it("refuses duplicate expanded names, count with a range, and bad counts", () => {
    const text = [
      "name: l", // 1
      "machines:", // 2
      "  web: { base: b, count: 2 }", // 3
      "  web-{2..3}: { base: b }", // 4
      "  db-{1..2}: { base: b, count: 2 }", // 5
      "  x: { base: b, count: 0 }", // 6
    ].join("\n");
    expect(errorsOf(text)).toEqual([
      "lab.yaml:4:3: machine name 'web-2' is used twice (also from 'web')",
      "lab.yaml:5:3: machine 'db-{1..2}' has both a name range and a count; use one of them",
      "lab.yaml:6:24: count must be between 1 and 512",
    ]);
  });

  it("checks subnets and fixed addresses", () => {
    const text = [
      "name: l", // 1
      "networks:", // 2
      "  a: 10.0.0.5/24", // 3
      "  b: 127.0.0.0/24", // 4
      "  c: 10.1.0.0/31", // 5
      "  d: 10.2.0.0/29", // 6
      "  e: { }", // 7
      "machines:", // 8
      "  m: { base: b, networks: { d: 10.2.0.7 } }", // 9
      "  n: { base: b, networks: { d: 10.2.0.9 } }", // 10
      "  o: { base: b, networks: { d: 10.2.0.4 } }", // 11
      "  p: { base: b, networks: { d: 10.2.0.4 } }", // 12
      "  q: { base: b, networks: { d: 10.2.0.3/24 } }", // 13
      "  r: { base: b, networks: { d: 10.2.0.300 } }", // 14
    ].join("\n");
    expect(errorsOf(text)).toEqual([
      "lab.yaml:3:6: network 'a': subnet '10.0.0.5/24' has host bits set; did you mean 10.0.0.0/24?",
      "lab.yaml:4:6: network 'b': subnet 127.0.0.0/24 overlaps loopback (127.0.0.0/8)",
      "lab.yaml:5:6: network 'c': subnet '10.1.0.0/31' must have a prefix between /8 and /30",
      "lab.yaml:6:3: network 'd' has 6 machines but 10.2.0.0/29 holds only 5",
      "lab.yaml:7:6: network 'e' needs a subnet (CIDR, e.g. 10.10.1.0/24)",
      "lab.yaml:9:32: address 10.2.0.7 is reserved in 10.2.0.0/29 (broadcast address)",
      "lab.yaml:10:32: address 10.2.0.9 is outside 10.2.0.0/29 of network 'd'",
      "lab.yaml:12:32: address 10.2.0.4 on network 'd' is already given to machine 'o'",
      "lab.yaml:13:32: address '10.2.0.3/24' has prefix /24 but network 'd' is 10.2.0.0/29",
      "lab.yaml:14:32: address '10.2.0.300' is not an IPv4 address",
    ]);
  });

  it("refuses a network too small for its machines", () => {
    expect(
      errorsOf(
        "name: l\nnetworks:\n  n: 10.0.0.0/30\nmachines:\n  w: { base: b, count: 2, networks: [n] }\n",
      ),
    ).toEqual(["lab.yaml:3:3: network 'n' has 2 machines but 10.0.0.0/30 holds only 1"]);
  });

  it("checks ports, files and other field types", () => {
    const text = [
      "name: l", // 1
      "networks: { n: 10.0.0.0/24 }", // 2
      "machines:", // 3
      "  a: { base: b, networks: [n], ports: ['8080:80'] }", // 4
      "  c: { base: b, networks: [n], ports: ['8080:81', '70000:1', 'x'] }", // 5
      "  d: { base: b, ports: ['9000:1'] }", // 6
      "  e:", // 7
      "    base: b@x", // 8
      "    boot: yes", // 9
      "    resources: { memory: lots, cpus: 0 }", // 10
      "    files:", // 11
      "      - { path: etc/x, content: a }", // 12
      "      - { path: /a/../b, content: a }", // 13
      "      - { path: /c }", // 14
      "      - { path: /d, content: a, mode: 999 }", // 15
      "    env: { 1BAD: x }", // 16
      "    node: N1", // 17
    ].join("\n");
    expect(errorsOf(text)).toEqual([
      "lab.yaml:5:40: host port tcp/8080 is already forwarded to machine 'a'",
      "lab.yaml:5:51: ports in '70000:1' must be between 1 and 65535",
      "lab.yaml:5:62: port 'x' must look like 8080:80 or 5353:53/udp",
      "lab.yaml:6:25: machine 'd' forwards ports but joins no network",
      "lab.yaml:8:11: base 'b@x': invalid version in \"b@x\"; write NAME or NAME@N",
      "lab.yaml:9:11: boot must be true or false",
      'lab.yaml:10:26: memory must be a size like 512M or 2G (got "lots")',
      "lab.yaml:10:38: cpus must be above 0 and at most 1024",
      "lab.yaml:12:17: file path 'etc/x' must be absolute",
      "lab.yaml:13:17: file path '/a/../b' must be normalized (no empty, '.' or '..' parts, no trailing '/')",
      "lab.yaml:14:9: a file needs content or source",
      'lab.yaml:15:39: mode must be octal permission bits like 0644 or "0755"',
      "lab.yaml:16:12: invalid environment variable name '1BAD'",
      "lab.yaml:17:11: invalid node name 'N1'",
    ]);
  });

  it("reports YAML syntax errors and empty files", () => {
    expect(errorsOf("name: l\nmachines:\n  a: [b\n")[0]).toMatch(/^lab\.yaml:\d+:\d+: /);
    expect(errorsOf("")).toEqual(["lab.yaml: the lab spec is empty; it needs at least a name and machines"]);
    expect(errorsOf("name: l\nname: m\nmachines: {a: {base: b}}\n")[0]).toMatch(
      /^lab\.yaml:2:1: Map keys must be unique/,
    );
    expect(errorsOf("- a\n")).toEqual(["lab.yaml:1:1: a lab spec must be a mapping"]);
    expect(errorsOf("name: l\n")).toEqual(["lab.yaml:1:1: the lab spec needs machines"]);
  });

  it("loadLabSpec throws INVALID_ARGUMENT listing every issue", () => {
    try {
      loadLabSpec("name: l\nmachines:\n  a: {}\n  b: { base: b, networks: [x] }\n", "shop.yaml");
      expect.unreachable();
    } catch (err) {
      const e = err as ProtoctlError;
      expect(e).toBeInstanceOf(ProtoctlError);
      expect(e.code).toBe(Code.INVALID_ARGUMENT);
      expect(e.reason).toBe("INVALID_LAB_SPEC");
      expect(e.message.split("\n")).toEqual([
        "shop.yaml: 2 problems in the lab spec",
        "shop.yaml:3:3: machine 'a' needs a base (NAME or NAME@N)",
        "shop.yaml:4:28: machine 'b' joins unknown network 'x' (the lab defines no networks)",
      ]);
    }
  });
});
