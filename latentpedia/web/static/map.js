// The latent map page: every latent of a source as a WebGL scatter (plotly.js scattergl, served
// from the installed plotly package). Colour by density, explanation score or cluster; hover
// shows the explanation; a click opens the latent; a lasso (or box) selection can be saved as a
// list by a logged-in user (POST list_url with the session's CSRF token).
(() => {
  "use strict";
  const app = document.getElementById("map-app");
  const plot = document.getElementById("map-plot");
  if (!app || !plot || typeof Plotly === "undefined") return;
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const state = { data, selected: [], plot };
  window.latentMap = state;
  const status = (text) => { document.getElementById("map-status").textContent = text; };

  const colourings = {
    density: () => ({
      color: data.density.map((d) => (d > 0 ? Math.log10(d) : -10)),
      colorscale: "Viridis", showscale: true, colorbar: { title: { text: "log10 density" } },
    }),
    score: () => ({
      color: data.score.map((s) => (s === null ? -1 : s)),
      colorscale: [[0, "#dddddd"], [0.01, "#fde0c5"], [1, "#b2182b"]], cmin: -1, cmax: 1,
      showscale: true, colorbar: { title: { text: "best score (grey: none)" } },
    }),
    cluster: () => ({ color: data.cluster, colorscale: "Portland", showscale: false }),
  };

  const hover = data.index.map((index, i) => {
    const text = data.explanation[i];
    const score = data.score[i] === null ? "" : ` (score ${data.score[i].toFixed(2)})`;
    return `#${index} · cluster ${data.cluster[i]}<br>${text ? escapeHtml(text).slice(0, 160) + score : "<i>no explanation</i>"}`;
  });

  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function trace(by) {
    return {
      type: "scattergl", mode: "markers", x: data.x, y: data.y, customdata: data.index,
      text: hover, hoverinfo: "text", name: "latents",
      marker: { size: data.n > 20000 ? 3 : 5, opacity: 0.85, ...colourings[by]() },
      selected: { marker: { opacity: 1 } }, unselected: { marker: { opacity: 0.15 } },
    };
  }

  const traces = [trace("density")];
  if (data.highlight !== null) {
    const at = data.index.indexOf(data.highlight);
    if (at >= 0) {
      traces.push({
        type: "scattergl", mode: "markers", x: [data.x[at]], y: [data.y[at]], customdata: [data.highlight],
        text: [hover[at]], hoverinfo: "text", name: "this latent",
        marker: { size: 14, color: "rgba(0,0,0,0)", line: { color: "#d62728", width: 3 } },
      });
    }
  }
  const layout = {
    margin: { l: 30, r: 10, t: 10, b: 30 }, dragmode: "pan", hovermode: "closest", showlegend: false,
    xaxis: { zeroline: false, showgrid: false }, yaxis: { zeroline: false, showgrid: false, scaleanchor: "x" },
  };
  const config = { scrollZoom: true, displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"] };

  Plotly.newPlot(plot, traces, layout, config).then(() => { state.ready = true; plot.dataset.ready = "1"; });

  document.getElementById("map-colour").addEventListener("change", (event) => {
    const by = event.target.value;
    Plotly.restyle(plot, { marker: [trace(by).marker] }, [0]);
  });

  plot.on("plotly_click", (event) => {
    const point = event && event.points && event.points[0];
    if (!point) return;
    window.location.href = data.feature_url.replace("{index}", String(point.customdata));
  });

  const button = document.getElementById("map-make-list");
  function select(points) {
    state.selected = Array.from(new Set((points || []).filter((p) => p.curveNumber === 0).map((p) => p.customdata))).sort((a, b) => a - b);
    document.getElementById("map-selection").textContent = state.selected.length
      ? `${state.selected.length.toLocaleString()} latents selected` : "nothing selected";
    if (button) button.disabled = state.selected.length === 0;
  }
  plot.on("plotly_selected", (event) => select(event ? event.points : []));
  plot.on("plotly_deselect", () => select([]));

  if (button) {
    button.addEventListener("click", async () => {
      const name = document.getElementById("map-list-name").value.trim();
      const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
      button.disabled = true;
      status("saving…");
      try {
        const response = await fetch(data.list_url, {
          method: "POST", credentials: "same-origin",
          headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf },
          body: JSON.stringify({ name, indices: state.selected }),
        });
        const body = await response.json();
        if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
        const link = document.createElement("a");
        link.id = "map-list-link";
        link.href = body.url;
        link.textContent = `list of ${body.n_items} latents`;
        const out = document.getElementById("map-status");
        out.textContent = "saved: ";
        out.appendChild(link);
      } catch (err) {
        status(`could not save: ${err.message}`);
      } finally {
        button.disabled = state.selected.length === 0;
      }
    });
  }
})();
