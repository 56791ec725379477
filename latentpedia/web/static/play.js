// The game's pages: submit / vote / skip / report as JSON with the session's CSRF token,
// the result panel (numbers in advanced mode, plain words in simple mode), the tutorial and
// mode switch (remembered per player), sign-up, the admin page. Text is set as text, never HTML.
(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const puzzle = document.getElementById("puzzle");

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf() },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail;
      throw new Error(detail || `error ${response.status}`);
    }
    return data;
  }

  function showError(form, err) {
    const box = form?.querySelector(".form-error");
    if (box) { box.textContent = String(err.message || err); box.hidden = false; } else window.alert(String(err.message || err));
  }

  function latent() {
    const d = puzzle.dataset;
    return { modelId: d.model, layer: d.layer, index: parseInt(d.index, 10), campaign: d.campaign || null, daily: d.daily === "true" };
  }

  const simple = () => puzzle.classList.contains("mode-simple");
  const fmt = (x) => (x === null || x === undefined ? "—" : Number(x).toFixed(3));

  function row(label, text, score) {
    const tr = document.createElement("tr");
    for (const value of [label, text, simple() ? "" : fmt(score)]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }

  function verdict(result) {
    const words = {
      best: "The best explanation so far!", beat: "Better than a random guess.",
      below: "Not better than a random guess this time.", duplicate: "Someone already said that: it counts as your vote.",
      vote: "Vote counted.", skip: "Skipped.",
    };
    return words[result.outcome] || result.outcome;
  }

  function showResult(result) {
    const box = document.getElementById("result");
    document.getElementById("result-title").textContent = verdict(result);
    const rows = document.getElementById("result-rows");
    rows.replaceChildren();
    if (result.action === "explain") rows.append(row("yours", document.getElementById("guess").value, result.score));
    if (result.duplicate_of) rows.append(row("same as", result.duplicate_of, null));
    if (result.baseline !== null && result.baseline !== undefined) rows.append(row("a random guess", simple() ? "" : "random explanation baseline", result.baseline));
    if (result.machine) rows.append(row("the machine's", result.machine.text, result.machine.score));
    if (result.best) rows.append(row("the best", `${result.best.text} (${result.best.author || "someone"})`, result.best.score));
    if (result.scoring_later?.length) rows.append(row("later", `${result.scoring_later.join(", ")} (the server's LLM): on your player page in a moment`, null));
    document.getElementById("result-points").textContent = `+${result.points} points · ${result.total_points} in all`;
    const points = document.getElementById("my-points");
    if (points) points.textContent = String(result.total_points);
    const next = document.getElementById("next");
    next.href = result.next_url || "/play";
    box.hidden = false;
    for (const b of puzzle.querySelectorAll("#submit-form button, button.vote")) b.disabled = true;
  }

  if (puzzle) {
    const form = document.getElementById("submit-form");
    form?.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { showResult(await post("/api/play/submit", { ...latent(), text: document.getElementById("guess").value })); }
      catch (err) { showError(form, err); }
    });
    document.getElementById("skip")?.addEventListener("click", async () => {
      try { const r = await post("/api/play/skip", latent()); window.location.href = r.next_url || "/play"; }
      catch (err) { showError(form, err); }
    });
    puzzle.addEventListener("click", async (event) => {
      const vote = event.target.closest("button.vote");
      const report = event.target.closest("button.report");
      try {
        if (vote) {
          const { campaign, daily } = latent();
          showResult(await post("/api/play/vote", { explanation_id: parseInt(vote.dataset.id, 10), campaign, daily }));
        } else if (report) {
          const reason = window.prompt("Why should a moderator look at this explanation?", "spam") ?? null;
          if (reason === null) return;
          await post("/api/play/report", { explanation_id: parseInt(report.dataset.id, 10), reason });
          report.textContent = "reported";
          report.disabled = true;
        }
      } catch (err) { showError(form, err); }
    });
    document.getElementById("tutorial-done")?.addEventListener("click", async () => {
      await post("/api/play/prefs", { tutorial_done: true }).catch(() => null);
      document.getElementById("tutorial").hidden = true;
    });
    document.getElementById("mode-toggle")?.addEventListener("click", async (event) => {
      await post("/api/play/prefs", { mode: event.target.dataset.mode }).catch(() => null);
      window.location.reload();
    });
    document.getElementById("test-text")?.addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = document.getElementById("test-text-out");
      const { modelId, layer, index } = latent();
      try {
        const r = await post("/api/activation/new", { modelId, layer, index, text: event.target.text.value });
        out.replaceChildren(...r.tokens.slice(1).map((t, i) => {
          const span = document.createElement("span");
          const v = r.values[i + 1];
          span.className = v > 0 ? "tok on" : "tok";
          span.style.setProperty("--a", String(Math.min(v / (r.maxValue || 1), 1)));
          span.title = String(v);
          span.textContent = t;
          return span;
        }));
      } catch (err) { out.textContent = String(err.message || err); }
    });
  }

  const signup = document.getElementById("signup-form");
  signup?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(signup).entries());
    try { await post("/api/play/signup", body); window.location.href = "/play"; } catch (err) { showError(signup, err); }
  });

  for (const button of document.querySelectorAll("button.moderate")) {
    button.addEventListener("click", async () => {
      try { await post("/api/play/moderate", { explanation_id: parseInt(button.dataset.id, 10), action: button.dataset.action }); window.location.reload(); }
      catch (err) { window.alert(String(err.message || err)); }
    });
  }
  document.getElementById("new-invite")?.addEventListener("click", async () => {
    const r = await post("/api/play/invite", {});
    document.getElementById("invite-code").textContent = r.code;
  });
  const campaign = document.getElementById("campaign-form");
  campaign?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(campaign).entries());
    body.ends_at = body.ends_at ? `${body.ends_at}:00Z` : null;
    try { await post("/api/play/campaign", body); window.location.reload(); } catch (err) { showError(campaign, err); }
  });
})();
