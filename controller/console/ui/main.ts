/**
 * The console page: signs in with the token in the URL's fragment (never
 * sent to a server log), then follows /api/live (server-sent events) and
 * redraws. Read-only.
 */

import type { ClusterEvent, ConsoleEnv, ConsoleState } from "../view-types.js";
import { bar, bytes, h, phase, replace } from "./dom.js";
import { topology } from "./topology.js";

let state: ConsoleState | undefined;
const events: ClusterEvent[] = [];
let panelEnv: string | undefined;
let logSource: EventSource | undefined;

async function signIn(): Promise<boolean> {
  const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (m) {
    history.replaceState(null, "", location.pathname);
    const r = await fetch("/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: decodeURIComponent(m[1]!) }),
    });
    if (!r.ok) {
      const why = ((await r.json().catch(() => ({}))) as { error?: string }).error ?? r.statusText;
      return notSignedIn(`sign-in refused: ${why}. Run \`protoctl console\` for a fresh link.`);
    }
  }
  const who = await fetch("/api/session");
  if (!who.ok) return notSignedIn("Not signed in. Run `protoctl console` and open the link it prints.");
  const s = (await who.json()) as { user: string; role: string };
  replace("who", `${s.user} (${s.role}) · read-only`);
  return true;
}

function notSignedIn(text: string): false {
  const el = document.getElementById("signin")!;
  el.textContent = text;
  el.hidden = false;
  setConn("down", "signed out");
  return false;
}

function setConn(cls: string, text: string): void {
  const el = document.getElementById("conn")!;
  el.className = `conn ${cls}`;
  el.textContent = text;
}

function connect(): void {
  const es = new EventSource("/api/live");
  es.addEventListener("open", () => setConn("live", "live"));
  es.addEventListener("error", () => setConn("down", "reconnecting…"));
  es.addEventListener("state", (e) => {
    state = JSON.parse((e as MessageEvent<string>).data) as ConsoleState;
    render();
  });
  es.addEventListener("events", (e) => {
    const batch = JSON.parse((e as MessageEvent<string>).data) as ClusterEvent[];
    events.push(...batch);
    events.splice(0, Math.max(0, events.length - 200));
    renderEvents();
  });
}

function render(): void {
  if (!state) return;
  replace("cluster", `cluster ${state.cluster.slice(0, 8)} · leader ${state.leader || "?"}`);
  renderNodes(state);
  renderFilters(state);
  renderEnvs(state);
  renderPushes(state);
  renderLabs(state);
  if (panelEnv) renderDescribeSummary(panelEnv);
}

function renderNodes(st: ConsoleState): void {
  const rows = st.nodes.map((n) => {
    const used = n.poolSizeBytes - n.poolFreeBytes;
    return h(
      "tr",
      { "data-node": n.name },
      h(
        "td",
        {},
        n.name,
        n.cordoned ? h("span", { class: "muted" }, " cordoned") : null,
        n.draining ? h("span", { class: "muted" }, " draining") : null,
      ),
      h("td", {}, phase(n.state)),
      h(
        "td",
        {},
        bar(n.poolSizeBytes ? used / n.poolSizeBytes : 0, `${bytes(used)} of ${bytes(n.poolSizeBytes)}`),
        h("span", { class: "muted" }, `${bytes(used)} / ${bytes(n.poolSizeBytes)}`),
      ),
      h("td", {}, String(n.envs)),
      h("td", {}, n.bases.join(", ") || h("span", { class: "muted" }, "none")),
      h("td", {}, `${n.attached} / ${n.hydrating}`),
    );
  });
  replace(
    "nodes",
    rows.length
      ? h(
          "table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ...["node", "state", "pool", "envs", "bases", "attached / hydrating"].map((t) =>
                h("th", {}, t),
              ),
            ),
          ),
          h("tbody", {}, ...rows),
        )
      : h("p", { class: "muted" }, "no nodes have joined"),
  );
}

function renderFilters(st: ConsoleState): void {
  fillSelect("env-phase", [...new Set(st.envs.map((e) => e.phase))].sort(), "any phase");
  fillSelect("env-node", [...new Set(st.envs.map((e) => e.node).filter(Boolean))].sort(), "any node");
}

function fillSelect(id: string, values: string[], any: string): void {
  const sel = document.getElementById(id) as HTMLSelectElement;
  const cur = sel.value;
  sel.replaceChildren(h("option", { value: "" }, any), ...values.map((v) => h("option", { value: v }, v)));
  sel.value = values.includes(cur) ? cur : "";
}

function envMatches(e: ConsoleEnv): boolean {
  const text = (document.getElementById("env-filter") as HTMLInputElement).value.trim().toLowerCase();
  const ph = (document.getElementById("env-phase") as HTMLSelectElement).value;
  const node = (document.getElementById("env-node") as HTMLSelectElement).value;
  if (ph && e.phase !== ph) return false;
  if (node && e.node !== node) return false;
  if (!text) return true;
  return [e.name, e.base, e.node, e.group, ...e.layers].some((v) => v.toLowerCase().includes(text));
}

function renderEnvs(st: ConsoleState): void {
  const list = st.envs.filter(envMatches);
  const rows = list.map((e) =>
    h(
      "tr",
      { class: "clickable", "data-env": e.name, onclick: () => openEnv(e.name) },
      h("td", {}, e.name),
      h("td", {}, phase(e.phase)),
      h("td", {}, e.node || h("span", { class: "muted" }, "—")),
      h("td", {}, e.base),
      h("td", {}, e.layers.join(" › ") || h("span", { class: "muted" }, "—")),
    ),
  );
  replace(
    "envs",
    rows.length
      ? h(
          "table",
          {},
          h(
            "thead",
            {},
            h("tr", {}, ...["name", "status", "node", "base", "layers"].map((t) => h("th", {}, t))),
          ),
          h("tbody", {}, ...rows),
        )
      : h("p", { class: "muted" }, st.envs.length ? "no environment matches the filters" : "no environments"),
  );
}

function renderPushes(st: ConsoleState): void {
  const blocks = st.pushes.map((p) =>
    h(
      "div",
      { class: "push", "data-push": `${p.base}@${p.version}` },
      h("h3", {}, `${p.base}@${p.version}`),
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...["node", "phase", "hydrated", "from"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          ...p.nodes.map((n) =>
            h(
              "tr",
              { "data-node": n.node },
              h("td", {}, n.node),
              h("td", {}, phase(n.phase), n.message ? h("span", { class: "muted" }, ` ${n.message}`) : null),
              h(
                "td",
                {},
                bar(n.percent / 100, `${n.percent}%`),
                h("span", { class: "pct" }, `${n.percent}%`),
              ),
              h("td", {}, n.source || "—"),
            ),
          ),
        ),
      ),
    ),
  );
  replace(
    "pushes",
    ...(blocks.length ? blocks : [h("p", { class: "muted" }, "no base version pushed to other nodes")]),
  );
}

function renderLabs(st: ConsoleState): void {
  const blocks = st.labs.map((l) =>
    h(
      "div",
      { class: "lab", "data-lab": l.name },
      h("h3", {}, `${l.name} `, phase(l.phase)),
      topology(l, openEnv),
    ),
  );
  replace("labs", ...(blocks.length ? blocks : [h("p", { class: "muted" }, "no labs")]));
}

function renderEvents(): void {
  const items = events
    .slice()
    .reverse()
    .map((e) =>
      h(
        "li",
        {},
        h("span", { class: "muted" }, `${new Date(Number(e.timeMs)).toLocaleTimeString()} `),
        h("span", { class: "kind" }, e.kind),
        e.subject ? `${e.subject}: ` : "",
        e.message,
      ),
    );
  replace("events", ...items);
}

// ---- side panel: describe + logs ----

function openEnv(name: string): void {
  panelEnv = name;
  const panel = document.getElementById("panel")!;
  panel.hidden = false;
  panel.dataset.env = name;
  replace("panel-title", name);
  replace("panel-describe");
  replace("panel-logs");
  void describe(name);
  logSource?.close();
  const logs = document.getElementById("panel-logs")!;
  logSource = new EventSource(`/api/envs/${encodeURIComponent(name)}/logs`);
  logSource.addEventListener("line", (e) => {
    const l = JSON.parse((e as MessageEvent<string>).data) as { text: string };
    logs.append(document.createTextNode(l.text));
    if (logs.textContent!.length > 200_000) logs.textContent = logs.textContent!.slice(-100_000);
    logs.scrollTop = logs.scrollHeight;
  });
  logSource.addEventListener("failed", (e) => {
    logs.append(
      document.createTextNode(
        `\n[logs: ${(JSON.parse((e as MessageEvent<string>).data) as { error: string }).error}]\n`,
      ),
    );
    logSource?.close();
  });
}

function renderDescribeSummary(name: string): void {
  const e = state?.envs.find((x) => x.name === name);
  const dd = document.querySelector("#panel-describe dd[data-field=phase]");
  if (e && dd) dd.replaceChildren(phase(e.phase));
}

async function describe(name: string): Promise<void> {
  const r = await fetch(`/api/envs/${encodeURIComponent(name)}`);
  if (panelEnv !== name) return;
  if (!r.ok) {
    replace("panel-describe", h("dt", {}, "error"), h("dd", {}, `${r.status}`));
    return;
  }
  const d = (await r.json()) as { spec?: Record<string, unknown>; status?: Record<string, unknown> };
  const e = state?.envs.find((x) => x.name === name);
  const rows: Array<[string, string | Node]> = [
    ["phase", e ? phase(e.phase) : String(d.status?.phase ?? "")],
    ["node", String(d.status?.node ?? "")],
    ["base", e?.base ?? ""],
    ["layers", (e?.layers ?? []).join(" › ")],
    ["addresses", (e?.addresses ?? []).join(", ")],
    ["message", String(d.status?.message ?? "")],
    ["spec", JSON.stringify(d.spec ?? {}, null, 1)],
  ];
  replace("panel-describe", ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, v)]));
}

function closePanel(): void {
  panelEnv = undefined;
  logSource?.close();
  logSource = undefined;
  document.getElementById("panel")!.hidden = true;
}

async function main(): Promise<void> {
  document.getElementById("panel-close")!.addEventListener("click", closePanel);
  for (const id of ["env-filter", "env-phase", "env-node"])
    document.getElementById(id)!.addEventListener("input", () => state && renderEnvs(state));
  if (await signIn()) connect();
}

void main();
