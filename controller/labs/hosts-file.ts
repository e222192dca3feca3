/**
 * The text of a lab machine's /etc/hosts, for rewriting it in place on a
 * kept machine when its peers change. Same layout as the agent writes at
 * create time (agent/service/env-spec-check.ts `hostsFile`): localhost, the
 * machine's own name, then the lab entries.
 */
export function hostsFileText(hostname: string, entries: Readonly<Record<string, string>>): string {
  const lines = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    `127.0.1.1\t${hostname}`,
  ];
  for (const [name, addr] of Object.entries(entries)) lines.push(`${addr}\t${name}`);
  return `${lines.join("\n")}\n`;
}
