// Attribution graphs, offline: the /graph form and the /graph/{id} page (SVG, no libraries).
// Layout: prompt positions across, layers up (token embeddings at the bottom, logits on top);
// node area by influence; links coloured by sign. Hover: label and top examples; click: select
// (pin, steer, ablate, dashboard); double-click: the latent's dashboard. Pinned nodes group into
// named supernodes; "save and share" stores them as a new graph. All text goes in via textContent.
"use strict";
(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const el = (tag, attrs = {}, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const svgEl = (tag, attrs = {}) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  async function postJSON(url, body) {
    const response = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf() },
      body: JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`);
    return data;
  }

  // ------------------------------------------------------------------ the /graph form
  function initForm(form) {
    const status = document.getElementById("graph-status");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      for (const input of form.querySelectorAll("input, select")) {
        body[input.name] = input.type === "number" ? Number(input.value) : input.value;
      }
      status.textContent = "computing the graph (batched backward passes on the CPU)…";
      try { window.location = (await postJSON(form.dataset.endpoint, body)).url; }
      catch (err) { status.textContent = err.message; }
    });
  }

  // ------------------------------------------------------------------ the graph page
  function layout(graph, width) {
    const tokens = graph.metadata.prompt_tokens;
    const rank = (n) => (n.layer === "E" ? 0 : Number(n.layer) + 1);
    const top = Math.max(...graph.nodes.map(rank));
    const colW = Math.max(70, (width - 60) / tokens.length), rowH = Math.max(18, Math.min(34, 640 / (top + 1)));
    const cells = new Map();
    for (const n of graph.nodes) {
      const key = `${rank(n)}:${n.ctx_idx}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(n);
    }
    const maxInf = Math.max(1e-9, ...graph.nodes.map((n) => Math.abs(n.influence || 0)));
    for (const group of cells.values()) {
      group.forEach((n, i) => {
        n.x = 50 + n.ctx_idx * colW + ((i + 1) / (group.length + 1)) * colW * 0.9;
        n.y = 20 + (top - rank(n)) * rowH + rowH / 2;
        const weight = n.feature_type === "logit" ? n.token_prob || 0 : Math.abs(n.influence || 0) / maxInf;
        n.r = 3 + 8 * Math.sqrt(Math.min(1, weight));
      });
    }
    return { width: 60 + tokens.length * colW, height: 60 + (top + 1) * rowH, colW, rowH, top, tokens };
  }

  function draw(state) {
    const { graph, svg } = state;
    const box = layout(graph, svg.parentElement.clientWidth || 900);
    svg.setAttribute("viewBox", `0 0 ${box.width} ${box.height}`);
    svg.setAttribute("width", box.width);
    svg.setAttribute("height", box.height);
    svg.replaceChildren();
    const maxW = Math.max(1e-9, ...graph.links.map((l) => Math.abs(l.weight)));
    const linkLayer = svgEl("g", { class: "links" }), nodeLayer = svgEl("g", { class: "nodes" });
    for (const link of graph.links) {
      const a = state.byId.get(link.source), b = state.byId.get(link.target);
      const line = svgEl("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: link.weight >= 0 ? "pos" : "neg",
        "stroke-opacity": (0.08 + 0.6 * Math.abs(link.weight) / maxW).toFixed(3) });
      line.dataset.source = link.source;
      line.dataset.target = link.target;
      linkLayer.append(line);
    }
    box.tokens.forEach((t, i) => {
      const label = svgEl("text", { x: 50 + (i + 0.5) * box.colW, y: box.height - 8, class: "tok" });
      label.textContent = t;
      nodeLayer.append(label);
    });
    for (const n of graph.nodes) {
      const circle = svgEl("circle", { cx: n.x, cy: n.y, r: n.r, class: `node ${n.feature_type.replace(/ /g, "-")}` });
      circle.dataset.id = n.node_id;
      if (state.pinned.has(n.node_id)) circle.classList.add("pinned");
      if (state.selected === n.node_id) circle.classList.add("selected");
      circle.addEventListener("mouseenter", () => hover(state, n));
      circle.addEventListener("click", () => select(state, n));
      circle.addEventListener("dblclick", () => { if (n.source) window.location = dashboardUrl(state, n); });
      const title = svgEl("title");
      title.textContent = nodeLabel(n);
      circle.append(title);
      nodeLayer.append(circle);
    }
    svg.append(linkLayer, nodeLayer);
    highlight(state, state.selected);
  }

  const dashboardUrl = (state, n) => `/${encodeURIComponent(state.model)}/${encodeURIComponent(n.source)}/${n.feature}`;
  const nodeLabel = (n) => {
    if (n.feature_type === "cross layer transcoder") return `${n.source || "L" + n.layer} #${n.feature} @${n.ctx_idx}${n.clerp ? ": " + n.clerp : ""}`;
    return n.clerp || n.node_id;
  };

  function highlight(state, nodeId) {
    for (const line of state.svg.querySelectorAll("line")) {
      line.classList.toggle("hot", !!nodeId && (line.dataset.source === nodeId || line.dataset.target === nodeId));
    }
  }

  async function featureSummary(state, n) {
    const key = `${n.source}/${n.feature}`;
    if (!state.features.has(key)) {
      state.features.set(key, fetch(`/api/feature/${encodeURIComponent(state.model)}/${encodeURIComponent(n.source)}/${n.feature}`,
        { headers: { accept: "application/json" } }).then((r) => (r.ok ? r.json() : null)).catch(() => null));
    }
    return state.features.get(key);
  }

  function exampleLine(example) {
    const tokens = example.tokens || [], at = example.maxValueTokenIndex ?? 0;
    return tokens.slice(Math.max(1, at - 8), at + 3).join("");
  }

  async function hover(state, n) {
    highlight(state, n.node_id);
    const panel = document.getElementById("node-panel");
    if (state.selected) return;  // the selected node's panel stays
    renderPanel(state, panel, n, false);
  }

  function select(state, n) {
    state.selected = state.selected === n.node_id ? null : n.node_id;
    draw(state);
    if (state.selected) renderPanel(state, document.getElementById("node-panel"), n, true);
  }

  async function renderPanel(state, panel, n, actions) {
    panel.replaceChildren(el("h2", {}, "Node"), el("p", { class: "node-label" }, nodeLabel(n)),
      el("p", { class: "meta" }, `${n.feature_type} · layer ${n.layer} · position ${n.ctx_idx}` +
        (n.activation != null ? ` · activation ${n.activation.toFixed(3)}` : "") +
        (n.influence != null ? ` · influence ${n.influence.toExponential(2)}` : "")));
    if (actions) panel.append(actionButtons(state, n));
    if (!n.source) return;
    const feature = await featureSummary(state, n);
    if (!feature) return;
    const list = el("ul", { class: "examples" });
    for (const ex of (feature.activations || []).slice(0, 3)) list.append(el("li", {}, exampleLine(ex)));
    const expl = (feature.explanations || [])[0];
    if (expl) panel.append(el("p", { class: "explanation" }, expl.description || expl.text || ""));
    panel.append(el("p", { class: "meta" }, "top examples"), list);
  }

  function actionButtons(state, n) {
    const box = el("div", { class: "node-actions" });
    const pin = el("button", { type: "button", id: "pin-button" }, state.pinned.has(n.node_id) ? "unpin" : "pin");
    pin.addEventListener("click", () => { togglePin(state, n.node_id); pin.textContent = state.pinned.has(n.node_id) ? "unpin" : "pin"; });
    box.append(pin);
    if (n.source) {
      box.append(el("a", { href: dashboardUrl(state, n), id: "dashboard-link" }, "dashboard"));
      const ablate = el("button", { type: "button", id: "ablate-button" }, "ablate here");
      const steer = el("button", { type: "button", id: "steer-button" }, "steer ×4");
      const out = el("div", { id: "intervention-result", class: "meta" });
      ablate.addEventListener("click", () => runAblate(state, n, out));
      steer.addEventListener("click", () => runSteer(state, n, out));
      box.append(ablate, steer, out);
    }
    return box;
  }

  async function runAblate(state, n, out) {
    const logits = state.graph.nodes.filter((x) => x.feature_type === "logit");
    out.textContent = "ablating…";
    try {
      const result = await postJSON("/api/ablate", { modelId: state.model, layer: n.source, index: n.feature,
        prompt: state.graph.metadata.prompt, positions: [n.ctx_idx], target_tokens: logits.map((x) => x.feature) });
      out.replaceChildren(el("p", {}, "log-prob of each top logit at the last position, before → after zero-ablation:"));
      const list = el("ul");
      for (const t of result.targets) {
        const last = t.before.length - 1;
        list.append(el("li", {}, `${JSON.stringify(t.token)}: ${t.before[last].toFixed(3)} → ${t.after[last].toFixed(3)}`));
      }
      out.append(list);
    } catch (err) { out.textContent = err.message; }
  }

  async function runSteer(state, n, out) {
    out.textContent = "steering…";
    try {
      const strength = 4 * Math.max(1, Math.abs(n.activation || 1));
      const result = await postJSON("/api/steer", { modelId: state.model, prompt: state.graph.metadata.prompt,
        features: [{ layer: n.source, index: n.feature, strength }], n_completion_tokens: 8, temperature: 0 });
      out.replaceChildren(...result.outputs.map((o) => el("p", {}, `${o.type}: ${o.text}`)));
    } catch (err) { out.textContent = err.message; }
  }

  function togglePin(state, nodeId) {
    if (state.pinned.has(nodeId)) state.pinned.delete(nodeId); else state.pinned.add(nodeId);
    renderPins(state);
    draw(state);
  }

  function renderPins(state) {
    const list = document.getElementById("pinned-list");
    list.replaceChildren();
    for (const id of state.pinned) {
      const n = state.byId.get(id);
      const box = el("input", { type: "checkbox", value: id });
      const item = el("li");
      item.append(box, document.createTextNode(" " + (n ? nodeLabel(n) : id)));
      list.append(item);
    }
    const groups = document.getElementById("supernode-list");
    groups.replaceChildren(...state.supernodes.map((g) => el("li", { class: "supernode" }, `${g[0]}: ${g.slice(1).join(", ")}`)));
  }

  function groupChecked(state) {
    const name = document.getElementById("supernode-name").value.trim();
    const ids = [...document.querySelectorAll("#pinned-list input:checked")].map((b) => b.value);
    const status = document.getElementById("save-status");
    if (!name || ids.length === 0) { status.textContent = "name the supernode and check at least one pinned node"; return; }
    state.supernodes.push([name, ...ids]);
    renderPins(state);
  }

  async function save(state) {
    const status = document.getElementById("save-status");
    try {
      const saved = await postJSON(`/api/graph/${encodeURIComponent(state.id)}/subgraph`,
        { pinnedIds: [...state.pinned], supernodes: state.supernodes });
      status.replaceChildren(document.createTextNode("saved: "), el("a", { href: saved.url, id: "saved-link" }, saved.url));
    } catch (err) { status.textContent = err.message === "HTTP 401" ? "log in to save" : err.message; }
  }

  async function initGraph(app) {
    const graph = await (await fetch(app.dataset.graph, { headers: { accept: "application/json" } })).json();
    const q = graph.qParams || {};
    const state = { graph, id: app.dataset.id, model: app.dataset.model, svg: document.getElementById("graph-svg"),
      byId: new Map(graph.nodes.map((n) => [n.node_id, n])), pinned: new Set(q.pinnedIds || []),
      supernodes: (q.supernodes || []).map((g) => [...g]), selected: null, features: new Map() };
    document.getElementById("group-button").addEventListener("click", () => groupChecked(state));
    document.getElementById("save-button").addEventListener("click", () => save(state));
    renderPins(state);
    draw(state);
    app.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("graph-generate");
    if (form) initForm(form);
    const app = document.getElementById("graph-app");
    if (app) initGraph(app);
  });
})();
