// Training page: start / stop, the queue, live progress from the job runner's server-sent events, the loss chart,
// validation gallery, checkpoints, log tail and job history.
"use strict";

(function () {
  const { api, message, el, say } = window.ST;
  const root = document.getElementById("training");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const losses = [];
  let current = null;

  function fmt(n, digits) { return n === null || n === undefined ? "—" : Number(n).toPrecision(digits || 4); }

  function eta(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    return s >= 3600 ? Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m" : Math.floor(s / 60) + "m " + (s % 60) + "s";
  }

  function drawChart() {
    const canvas = $("loss-chart");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (losses.length < 2) return;
    const max = Math.max(...losses), min = Math.min(...losses), span = max - min || 1;
    ctx.strokeStyle = "#2563eb";
    ctx.beginPath();
    losses.forEach((loss, i) => {
      const x = (i / (losses.length - 1)) * (canvas.width - 10) + 5;
      const y = canvas.height - 5 - ((loss - min) / span) * (canvas.height - 10);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  function showJob(job) {
    $("st-status").textContent = job ? job.status : "idle";
    $("st-phase").textContent = job ? job.phase : "—";
    $("st-step").textContent = job && job.total_steps ? job.step + " / " + job.total_steps : (job ? String(job.step || 0) : "—");
    $("st-loss").textContent = fmt(job && job.loss);
    $("st-speed").textContent = fmt(job && job.it_per_s, 3);
    $("st-eta").textContent = eta(job && job.eta_s);
    $("st-progress").value = job && job.total_steps ? job.step / job.total_steps : 0;
  }

  async function showDetail(id) {
    const result = await api("GET", "/api/jobs/" + id);
    if (!result.ok) return;
    const job = result.data;
    showJob(job);
    $("log-tail").textContent = (job.log_tail || []).join("\n");
    $("gallery").replaceChildren(...job.outputs.validation_images.filter((i) => i.url).map((image) => el("figure", {},
      el("img", { src: image.url, alt: "validation image at step " + image.step }),
      el("figcaption", { text: "step " + image.step }))));
    const items = job.outputs.checkpoints.map((c) => el("li", { text: "checkpoint at step " + c.step + ": " + c.path }));
    if (job.outputs.model) {
      const files = job.outputs.model.files.length ? job.outputs.model.files : [job.outputs.model];
      files.filter((f) => f.url).forEach((f) => items.push(el("li", { class: "model" }, "LoRA: ",
        el("a", { href: f.url, text: f.name || f.path }))));
    }
    $("outputs").replaceChildren(...items);
  }

  async function refresh() {
    const status = (await api("GET", "/api/training/status")).data;
    const job = status.job || status.last_finished;
    current = job ? job.id : null;
    if (job) await showDetail(job.id); else showJob(null);
    $("queue").replaceChildren(...(status.queue || []).map((j) => el("li", { text: "#" + j.id + " " + j.environment + " (" + j.owner + ")" })));
    const history = await api("GET", "/api/jobs?limit=20");
    if (history.ok) {
      $("history").querySelector("tbody").replaceChildren(...history.data.jobs.map((j) => el("tr", {},
        el("td", { text: "#" + j.id }), el("td", { text: j.environment }), el("td", { text: j.owner || "" }),
        el("td", { text: j.status + (j.error ? ": " + j.error : "") }), el("td", { text: String(j.step || 0) }),
        el("td", {}, el("a", { href: "/api/jobs/" + j.id, text: "details" })))));
    }
  }

  function onEvent(data) {
    if (current === null || data.job_id !== current) { refresh(); return; }
    if (data.event === "step") {
      losses.push(data.loss);
      drawChart();
      $("st-step").textContent = String(data.step);
      $("st-loss").textContent = fmt(data.loss);
      $("st-lr").textContent = fmt(data.lr, 3);
      $("st-speed").textContent = fmt(data.it_per_s, 3);
      $("st-eta").textContent = eta(data.eta_s);
    } else if (data.event === "cache_progress") {
      $("st-cache").textContent = data.kind + " " + data.done + " / " + data.total;
    } else {
      refresh();
    }
  }

  const start = $("train-start");
  if (start) {
    start.addEventListener("click", async () => {
      const result = await api("POST", "/api/training/start", { environment: root.dataset.env });
      say("train-message", result.ok ? "Job #" + result.data.job_id + " " + result.data.status : message(result), !result.ok);
      losses.length = 0;
      refresh();
    });
    $("train-stop").addEventListener("click", async () => {
      const result = await api("POST", "/api/training/stop", current ? { job_id: current } : {});
      say("train-message", result.ok ? "Stopping job #" + result.data.job_id : message(result), !result.ok);
    });
  }

  const source = new EventSource("/api/events");
  source.addEventListener("message", (event) => {
    try { onEvent(JSON.parse(event.data)); } catch (e) { /* a malformed event is skipped */ }
  });
  refresh();
})();
