// latentpedia jobs: live progress on /jobs and on the home page, and the /jobs forms.
// /jobs polls GET /api/jobs and redraws the table (text only, never HTML); the home page polls
// GET /api/jobs/{id}/events for each unfinished job and reloads when one is done, so a new
// source appears. Forms send JSON to POST /api/jobs (or the zip to /api/jobs/upload-sae) with the
// session's CSRF token. Errors are shown in words.
(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const FINISHED = new Set(["done", "failed", "cancelled", "resumed", "interrupted", "stalled"]);
  const num = (n) => (n == null ? "" : Number(n).toLocaleString("en-US"));

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function progressText(job) {
    let text = job.stage ? job.stage + " " : "";
    if (job.total) text += `${num(job.done)}/${num(job.total)} ${job.unit} `;
    return text + `(${(100 * job.progress).toFixed(1)}%)`;
  }

  function jobRows(job, admin) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    tr.dataset.status = job.status;
    tr.append(cell(job.id), cell(job.kind, "job-kind"), cell(job.target, "job-target"), cell(job.status, "job-status"),
      cell(progressText(job), "n job-progress"), cell(job.rate ? `${Math.round(job.rate).toLocaleString("en-US")} ${job.unit}/s` : "", "n job-rate"),
      cell(job.eta || "", "job-eta"), cell(job.error ? `${job.message}` : job.message, "job-message"));
    const actions = cell("");
    if (admin && job.queued && !job.finished) {
      const button = document.createElement("button");
      button.type = "button"; button.className = "job-cancel"; button.dataset.jobId = job.id; button.textContent = "cancel";
      actions.append(button);
    }
    tr.append(actions);
    const rows = [tr];
    if (job.log.length) {
      const logRow = document.createElement("tr");
      logRow.className = "job-log-row"; logRow.dataset.logFor = job.id;
      const td = cell(""); const pre = document.createElement("pre");
      pre.className = "job-log"; pre.textContent = job.log.join("\n");
      const wide = document.createElement("td"); wide.colSpan = 8; wide.append(pre);
      logRow.append(td, wide);
      rows.push(logRow);
    }
    return rows;
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  // ------------------------------------------------------------------ the /jobs page
  async function refreshPage(table) {
    try {
      const page = await getJson("/api/jobs");
      const body = table.tBodies[0];
      const rows = page.jobs.flatMap((job) => jobRows(job, page.is_admin));
      if (!rows.length) { const tr = document.createElement("tr"); tr.className = "no-jobs"; tr.append(cell("No job yet.")); rows.push(tr); }
      body.replaceChildren(...rows);
      table.dataset.error = "";
    } catch (err) {
      table.dataset.error = String(err);
    }
    setTimeout(() => refreshPage(table), 1500);
  }

  function showError(form, message) {
    let box = form.querySelector(".form-error");
    if (!box) { box = document.createElement("p"); box.className = "form-error"; form.append(box); }
    box.textContent = message;
  }

  function fieldsOf(form) {
    const body = { kind: form.dataset.kind };
    for (const el of form.elements) {
      if (!el.name || el.value === "") continue;
      const type = el.dataset.type;
      if (type === "int") body[el.name] = parseInt(el.value, 10);
      else if (type === "list") body[el.name] = el.value.split(",").map((s) => s.trim()).filter(Boolean);
      else if (type === "intlist") body[el.name] = el.value.split(",").map((s) => parseInt(s.trim(), 10));
      else body[el.name] = el.value;
    }
    return body;
  }

  async function send(url, options) {
    const response = await fetch(url, { credentials: "same-origin", ...options,
      headers: { accept: "application/json", "x-csrf-token": csrf(), ...(options.headers || {}) } });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = Array.isArray(data.detail) ? data.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ") : data.detail;
      throw new Error(detail || `HTTP ${response.status}`);
    }
    return data;
  }

  async function submit(event) {
    const form = event.target.closest("form.job-form");
    if (!form) return;
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      let job;
      if (form.dataset.upload) {
        const data = new FormData(form);
        for (const [key, value] of [...data.entries()]) if (value === "") data.delete(key);
        job = await send(form.dataset.upload, { method: "POST", body: data });
      } else {
        job = await send("/api/jobs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(fieldsOf(form)) });
      }
      showError(form, `queued as job ${job.id}`);
      form.reset();
    } catch (err) {
      showError(form, String(err.message || err));
    } finally {
      button.disabled = false;
    }
  }

  async function cancel(event) {
    const button = event.target.closest("button.job-cancel");
    if (!button) return;
    button.disabled = true;
    try { await send(`/api/jobs/${button.dataset.jobId}/cancel`, { method: "POST" }); }
    catch (err) { button.textContent = String(err.message || err); }
  }

  // ------------------------------------------------------------------ the home page
  async function followOnHome(row) {
    let since = 0;
    for (;;) {
      let events;
      try { events = await getJson(`/api/jobs/${row.dataset.jobId}/events?since=${since}`); }
      catch (err) { await new Promise((r) => setTimeout(r, 5000)); continue; }
      since = events.next;
      const set = (cls, text) => { const el = row.querySelector(cls); if (el) el.textContent = text; };
      set(".job-status", events.status);
      set(".job-progress", `${(100 * events.progress).toFixed(1)}%` + (events.eta ? ` · ETA ${events.eta}` : ""));
      set(".job-message", events.message);
      row.dataset.status = events.status;
      if (events.finished) {
        if (events.status === "done") window.location.reload();  // the new source appears
        return;
      }
      await new Promise((r) => setTimeout(r, events.poll_ms || 1500));
    }
  }

  function start() {
    const page = document.querySelector('table[data-live-jobs="page"]');
    if (page) {
      document.addEventListener("submit", submit);
      document.addEventListener("click", cancel);
      refreshPage(page);
    }
    for (const row of document.querySelectorAll('table[data-live-jobs="home"] tr[data-job-id]')) {
      if (!FINISHED.has(row.dataset.status)) followOnHome(row);
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
