// Training page: start / stop, the queue, live progress from the job runner's server-sent events, the loss chart,
// validation gallery, checkpoints, the code that uses the final model, log tail and job history (any past job can be
// opened in the panel).
"use strict";

(function () {
  const { api, message, el, say } = window.ST;
  const root = document.getElementById("training");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const curve = []; // {step, loss, lr} of the job shown
  let current = null; // the job shown in the panel
  let pinned = null; // a job chosen from the history (else the running or last finished one)
  let total = null;
  let active = false;
  let announced = null; // the job whose start the message under Start reports

  function fmt(n, digits) { return n === null || n === undefined ? "—" : Number(n).toPrecision(digits || 4); }

  function eta(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    return s >= 3600 ? Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m" : Math.floor(s / 60) + "m " + (s % 60) + "s";
  }

  // The loss chart: raw loss (faint), its exponential moving average (the "Smoothing" slider) and the learning rate
  // on a right-hand axis, with step and value ticks. Colours come from the page's design tokens, so it follows
  // the light and dark schemes.
  const token = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function smoothed(values, factor) {
    let last = null;
    return values.map((v) => (last = last === null ? v : last * factor + v * (1 - factor)));
  }

  function ticks(min, max, count) {
    if (max === min) return [min];
    return Array.from({ length: count }, (_, i) => min + ((max - min) * i) / (count - 1));
  }

  function drawChart() {
    const canvas = $("loss-chart");
    const ctx = canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const points = curve.filter((p) => Number.isFinite(p.loss));
    canvas.dataset.points = String(points.length);
    const factor = Number(($("chart-smoothing") || { value: 0.8 }).value);
    const smooth = smoothed(points.map((p) => p.loss), factor);
    canvas.dataset.steps = points.length ? points[0].step + "-" + points[points.length - 1].step : "";
    canvas.setAttribute("aria-label", points.length ? "Loss chart: " + points.length + " steps up to step "
      + points[points.length - 1].step + ", last loss " + fmt(points[points.length - 1].loss) + ", smoothed "
      + fmt(smooth[smooth.length - 1]) : "Loss chart: no steps yet");
    if (points.length < 2) return;
    const left = 52, right = 56, top = 10, bottom = 26;
    const plotW = width - left - right, plotH = height - top - bottom;
    const first = points[0].step, last = points[points.length - 1].step, stepSpan = last - first || 1;
    const losses = points.map((p) => p.loss);
    const lossMin = Math.min(...losses), lossMax = Math.max(...losses), lossSpan = lossMax - lossMin || 1;
    const rates = points.map((p) => p.lr).filter(Number.isFinite);
    const lrMax = rates.length ? Math.max(...rates) : 0;
    const x = (step) => left + ((step - first) / stepSpan) * plotW;
    const y = (loss) => top + plotH - ((loss - lossMin) / lossSpan) * plotH;
    const yRate = (lr) => top + plotH - (lrMax ? lr / lrMax : 0) * plotH;
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = token("--color-border");
    ctx.fillStyle = token("--color-text-muted");
    ticks(lossMin, lossMax, 4).forEach((value) => {  // value grid and labels on the left
      ctx.beginPath(); ctx.moveTo(left, y(value)); ctx.lineTo(left + plotW, y(value)); ctx.stroke();
      ctx.textAlign = "right"; ctx.textBaseline = "middle"; ctx.fillText(fmt(value, 3), left - 6, y(value));
    });
    [...new Set(ticks(first, last, Math.min(5, last - first + 1)).map(Math.round))].forEach((step) => {
      ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.fillText(String(step), x(step), top + plotH + 6);
    });
    if (lrMax) {
      ctx.textAlign = "left"; ctx.textBaseline = "middle";
      [0, lrMax].forEach((lr) => ctx.fillText(lr.toExponential(1), left + plotW + 6, yRate(lr)));
    }
    const line = (values, colour, width, dash, place) => {
      ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.setLineDash(dash);
      ctx.beginPath();
      values.forEach((value, i) => { const px = x(points[i].step), py = place(value); if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py); });
      ctx.stroke();
      ctx.setLineDash([]);
    };
    if (rates.length === points.length) line(points.map((p) => p.lr), token("--color-success"), 1.5, [4, 3], yRate);
    line(losses, token("--color-border-strong"), 1, [], y);
    line(smooth, token("--color-primary"), 2, [], y);
  }

  function showStep(step) {
    $("st-step").textContent = total ? step + " / " + total : String(step || 0);
    $("st-progress").value = total ? Math.min(step / total, 1) : 0;
  }

  function showJob(job) {
    total = job ? job.total_steps : null;
    active = Boolean(job && ["running", "starting", "stopping"].includes(job.status));
    $("job-title").textContent = job ? "Job #" + job.id + " · " + job.environment + (job.owner ? " · " + job.owner : "") : "No job yet";
    $("st-status").textContent = job ? job.status + (job.error ? ": " + job.error : "") : "idle";
    $("st-phase").textContent = job ? job.phase || "—" : "—";
    if (job) showStep(job.step); else { $("st-step").textContent = "—"; $("st-progress").value = 0; }
    $("st-loss").textContent = fmt(job && job.loss);
    $("st-speed").textContent = fmt(job && job.it_per_s, 3);
    $("st-eta").textContent = eta(job && job.eta_s);
    const stop = $("train-stop");
    if (stop) stop.disabled = !active;
    if (job && job.id === announced && !active && job.status !== "queued") {
      say("train-message", "Job #" + job.id + " " + job.status + (job.error ? ": " + job.error : ""), job.status === "failed");
      announced = null;
    }
  }

  function allowStart(status) {
    // While a job of this environment runs or waits, Start says what another click does: queue another run.
    const start = $("train-start");
    if (!start || !root.dataset.env) return;
    const mine = [...(status.jobs || []), ...(status.queue || [])].find((j) => j.environment === root.dataset.env && j.kind !== "try");
    start.textContent = (mine ? "Queue another run of " : "Start training ") + root.dataset.env;
    start.title = mine ? "Job #" + mine.id + " of this environment is " + (mine.status || "queued") : "";
  }

  async function loadCurve(id) {
    const result = await api("GET", "/api/jobs/" + id + "/metrics");
    if (!result.ok || current !== id) return;
    curve.length = 0;
    result.data.steps.forEach((s) => curve.push(s));
    const last = result.data.steps[result.data.steps.length - 1];
    if (last) $("st-lr").textContent = fmt(last.lr, 3);
    drawChart();
  }

  function fileLink(file, label) {
    return el("a", { href: file.url, download: file.name || "", text: label || file.name });
  }

  async function showDetail(id) {
    const result = await api("GET", "/api/jobs/" + id);
    if (!result.ok) return;
    const job = result.data;
    showJob(job);
    $("log-tail").textContent = (job.log_tail || []).join("\n");
    $("run-dir").textContent = job.run_dir || "";
    $("run-folder").hidden = !job.run_dir;
    $("st-executor").textContent = job.executor + (job.executor_ref && job.executor !== "local" ? " (" + job.executor_ref + ")" : "");
    $("gallery").replaceChildren(...job.outputs.validation_images.filter((i) => i.url).map((image) => el("figure", {},
      el("img", { src: image.url, alt: "validation image at step " + image.step }),
      el("figcaption", { text: "step " + image.step }))));
    const items = job.outputs.checkpoints.map((c) => el("li", { class: "checkpoint" }, "Checkpoint at step " + c.step + ": ",
      ...c.files.filter((f) => f.url && f.name.endsWith(".safetensors")).flatMap((f, i) => (i ? [" · ", fileLink(f)] : [fileLink(f)]))));
    if (job.outputs.model) {
      const files = job.outputs.model.files.length ? job.outputs.model.files : [Object.assign({ name: job.outputs.model.path.split("/").pop() }, job.outputs.model)];
      files.filter((f) => f.url).forEach((f) => items.push(el("li", { class: "model" }, "LoRA: ", fileLink(f, "Download " + f.name))));
    }
    $("outputs").replaceChildren(...items);
    const usage = job.outputs.model && job.outputs.model.usage;
    $("usage-code").textContent = usage || "";
    $("usage-panel").hidden = !usage;
    $("log-link").href = job.log_url;
    $("log-link").hidden = false;
    showTries(job);
  }

  // "Try it": the job's finished tries, and the form that queues a new one (final model or a checkpoint).
  function showTries(job) {
    const weights = [];
    if (job.status === "completed" && job.outputs.model) weights.push(["", "Final model"]);
    job.outputs.checkpoints.forEach((c) => weights.push([c.path.split("/").pop(), "Checkpoint at step " + c.step]));
    $("try-panel").hidden = job.kind === "try" || (!weights.length && !job.outputs.tries.length);
    const select = $("try-weights");
    if (select && select.dataset.job !== String(job.id) + ":" + weights.length) {
      select.dataset.job = String(job.id) + ":" + weights.length;
      select.replaceChildren(...weights.map(([value, label]) => el("option", { value: value, text: label })));
      $("try-start").disabled = !weights.length;
    }
    $("tries").replaceChildren(...job.outputs.tries.map((attempt) => {
      const request = attempt.request || {};
      const heading = (request.checkpoint || "final model") + " · strength " + Number(request.strength).toFixed(2)
        + " · seed " + attempt.settings.seed + " · " + attempt.settings.steps + " steps";
      return el("figure", { class: "try" }, el("figcaption", { text: heading }),
        ...attempt.images.map((pair) => el("div", { class: "try-pair" },
          el("p", { class: "try-prompt", text: pair.prompt }),
          el("figure", {}, el("img", { src: pair.base, alt: "base model: " + pair.prompt }), el("figcaption", { text: "Base model" })),
          el("figure", {}, el("img", { src: pair.trained, alt: "trained model: " + pair.prompt }), el("figcaption", { text: "Trained, strength " + Number(request.strength).toFixed(2) })))));
    }));
  }

  async function show(id) {
    if (id !== current) {
      current = id;
      curve.length = 0;
      drawChart();
      if (id !== null) loadCurve(id);
    }
    if (id !== null) await showDetail(id); else showJob(null);
  }

  async function refresh() {
    const status = (await api("GET", "/api/training/status")).data;
    allowStart(status);
    const job = status.job || status.last_finished;
    await show(pinned !== null ? pinned : (job ? job.id : null));
    $("queue").replaceChildren(...(status.queue || []).map((j) => el("li", { text: "#" + j.id + " " + j.environment + " (" + (j.owner || "server") + "), place " + j.position })));
    $("queue-empty").hidden = Boolean(status.queue && status.queue.length);
    const history = await api("GET", "/api/jobs?limit=20");
    if (history.ok) {
      $("history").querySelector("tbody").replaceChildren(...history.data.jobs.map((j) => {
        const open = el("button", { type: "button", text: "Show job #" + j.id });
        open.addEventListener("click", () => { pinned = j.id; refresh(); root.scrollIntoView(); });
        return el("tr", { dataset: { job: String(j.id), total: j.total_steps || "" } }, el("td", { text: "#" + j.id }),
          el("td", { text: j.environment + (j.kind === "try" ? " (try)" : "") }), el("td", { text: j.owner || "server" }),
          el("td", { text: j.status + (j.error ? ": " + j.error : "") }),
          el("td", { class: "steps", text: j.kind === "try" ? "—" : String(j.step || 0) + (j.total_steps ? " / " + j.total_steps : "") }),
          el("td", {}, open));
      }));
    }
  }

  function historyStep(data) {
    // the history row follows the live steps too, so it never says less than the panel
    const row = document.querySelector('#history tr[data-job="' + data.job_id + '"]');
    if (row) row.querySelector(".steps").textContent = data.step + (row.dataset.total ? " / " + row.dataset.total : "");
  }

  function onEvent(data) {
    if (data.event === "step") historyStep(data);
    if (current === null || data.job_id !== current) { refresh(); return; }
    if (data.event === "step") {
      curve.push({ step: data.step, loss: data.loss, lr: data.lr });
      drawChart();
      showStep(data.step);
      $("st-phase").textContent = "training";
      $("st-loss").textContent = fmt(data.loss);
      $("st-lr").textContent = fmt(data.lr, 3);
      $("st-speed").textContent = fmt(data.it_per_s, 3);
      $("st-eta").textContent = eta(data.eta_s);
    } else if (data.event === "scan_progress") {
      $("st-phase").textContent = "scanning";
      $("st-cache").textContent = "images read " + data.done + " / " + data.total + (data.eta_s ? " (" + eta(data.eta_s) + " left)" : "");
    } else if (data.event === "cache_progress") {
      $("st-phase").textContent = "caching";
      $("st-cache").textContent = data.kind + " " + data.done + " / " + data.total;
    } else {
      refresh();
    }
  }

  const start = $("train-start");
  if (start) {
    start.addEventListener("click", async () => {
      start.disabled = true;  // one request per click
      const body = { environment: root.dataset.env };
      if ($("train-executor").value) body.executor = $("train-executor").value;
      const result = await api("POST", "/api/training/start", body);
      start.disabled = false;
      const where = result.ok && result.data.position ? " (place " + result.data.position + " in the queue)" : "";
      say("train-message", result.ok ? "Job #" + result.data.job_id + " " + result.data.status + where : message(result), !result.ok);
      announced = result.ok ? result.data.job_id : null;
      pinned = null;
      refresh();
    });
    $("train-stop").addEventListener("click", async () => {
      const result = await api("POST", "/api/training/stop", current ? { job_id: current } : {});
      say("train-message", result.ok ? "Stopping job #" + result.data.job_id : message(result), !result.ok);
    });
  }
  $("show-latest").addEventListener("click", () => { pinned = null; refresh(); });
  $("chart-smoothing").addEventListener("input", () => { $("chart-smoothing-value").textContent = Number($("chart-smoothing").value).toFixed(2); drawChart(); });
  window.addEventListener("resize", drawChart);

  const tryForm = $("try-form");
  if (tryForm) {
    $("try-strength").addEventListener("input", () => { $("try-strength-value").textContent = Number($("try-strength").value).toFixed(2); });
    tryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { prompts: $("try-prompts").value.split("\n").map((p) => p.trim()).filter(Boolean),
        strength: Number($("try-strength").value) };
      if ($("try-seed").value !== "") body.seed = Number($("try-seed").value);
      if ($("try-weights").value) body.checkpoint = $("try-weights").value;
      $("try-start").disabled = true;
      const trained = current;
      const result = await api("POST", "/api/jobs/" + trained + "/try", body);
      $("try-start").disabled = false;
      say("try-message", result.ok ? "Queued as job #" + result.data.job_id + "; the images appear below when it finishes." : message(result), !result.ok);
      if (result.ok) pinned = trained;  // keep this job in the panel while the try runs
    });
  }

  const source = new EventSource("/api/events");
  source.addEventListener("message", (event) => {
    try { onEvent(JSON.parse(event.data)); } catch (e) { /* a malformed event is skipped */ }
  });
  window.addEventListener("pagehide", () => source.close());
  refresh();
})();
