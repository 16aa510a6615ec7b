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
  let logJob = null; // the job whose log the log panel shows
  let logOffset = 0; // the byte of that job's log up to which the panel shows it
  let images = []; // validation images of the job shown, oldest step first
  let steps = []; // their distinct steps
  let viewing = -1; // index in `images` of the image open in the viewer
  let configShown = null; // the job whose configuration the panel holds
  const LOG_LINES = 500; // lines the live log keeps

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
    // scanning and caching progress only means something while the run prepares its data
    if (!job || !["starting", "scanning", "caching"].includes(job.phase)) $("st-cache").textContent = "—";
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
    if (logJob !== job.id) {  // the tail once per job shown; the event stream brings the rest
      logJob = job.id;
      showLog(job.log_tail || []);
      logOffset = job.log_offset || 0;
    }
    $("run-dir").textContent = job.run_dir || "";
    $("run-folder").hidden = !job.run_dir;
    $("st-executor").textContent = job.executor + (job.executor_ref && job.executor !== "local" ? " (" + job.executor_ref + ")" : "");
    showGallery(job.outputs.validation_images.filter((i) => i.url));
    if (configShown !== job.id) showConfig(job);
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

  // ---- the log: the tail from the job's record, then the lines the event stream brings
  function showLog(lines) {
    const pre = $("log-tail");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.slice(-LOG_LINES).join("\n");
    if (atEnd) pre.scrollTop = pre.scrollHeight;  // follow the end unless the reader scrolled up
  }

  function appendLog(data) {
    if (data.offset <= logOffset) return;  // already in the tail read over HTTP
    logOffset = data.offset;
    const pre = $("log-tail");
    const lines = pre.textContent ? pre.textContent.split("\n") : [];
    if (data.skipped) lines.push("[… " + data.skipped + " bytes of output skipped: the full log has them]");
    showLog(lines.concat(data.lines));
  }

  // ---- the validation gallery: one step at a time (the slider), each image with its prompt, full size on click
  function describe(image) {
    return (image.name ? image.name + ": " : "") + (image.prompt || "validation image");
  }

  function showGallery(list) {
    const following = !steps.length || Number($("gallery-step").value) === steps.length - 1;
    images = list;
    steps = [...new Set(list.map((i) => i.step))];
    const slider = $("gallery-step");
    $("gallery-steps").hidden = steps.length < 2;
    slider.max = String(Math.max(steps.length - 1, 0));
    if (following || Number(slider.value) > steps.length - 1) slider.value = String(Math.max(steps.length - 1, 0));
    drawGallery();
  }

  function drawGallery() {
    const index = Number($("gallery-step").value);
    const step = steps[index];
    $("gallery-step-value").textContent = steps.length ? "step " + step + " (" + (index + 1) + " of " + steps.length + ")" : "";
    $("gallery-step").setAttribute("aria-valuetext", "step " + step);
    $("gallery").replaceChildren(...images.map((image, at) => [image, at]).filter(([image]) => image.step === step)
      .map(([image, at]) => {
        const open = el("button", { type: "button", class: "thumb", "aria-label": "Show full size: " + describe(image) + ", step " + image.step },
          el("img", { src: image.url, alt: "" }));
        open.addEventListener("click", () => openViewer(at));
        return el("figure", {}, open, el("figcaption", { class: "prompt", text: describe(image) }));
      }));
  }

  function openViewer(at) {
    viewing = at;
    const image = images[at];
    $("image-viewer-img").src = image.url;
    $("image-viewer-img").alt = describe(image) + ", step " + image.step;
    $("image-viewer-title").textContent = (image.name || "Validation image") + " at step " + image.step;
    const facts = [["Prompt", image.prompt], ["Negative prompt", image.negative_prompt], ["Step", image.step],
      ["Seed", image.seed], ["Size", image.width ? image.width + " × " + image.height : null],
      ["Sampling steps", image.steps], ["Guidance", image.guidance]].filter(([, value]) => value !== undefined && value !== null && value !== "");
    $("image-viewer-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: String(value) })]));
    $("image-viewer-open").href = image.url;
    $("image-viewer-prev").disabled = at === 0;
    $("image-viewer-next").disabled = at === images.length - 1;
    const viewer = $("image-viewer");
    if (!viewer.open) viewer.showModal();
  }

  $("image-viewer-close").addEventListener("click", () => $("image-viewer").close());
  $("image-viewer-prev").addEventListener("click", () => { if (viewing > 0) openViewer(viewing - 1); });
  $("image-viewer-next").addEventListener("click", () => { if (viewing < images.length - 1) openViewer(viewing + 1); });
  $("image-viewer").addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft" && viewing > 0) openViewer(viewing - 1);
    if (event.key === "ArrowRight" && viewing < images.length - 1) openViewer(viewing + 1);
  });
  $("gallery-step").addEventListener("input", drawGallery);

  // ---- the configuration the run started with (set values; every option on request)
  function shown(value) {
    return value === null || value === undefined ? "(not set)" : typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function sourceName(from) {
    if (!from || from === "default") return "default";
    return from.startsWith("env:") ? "environment " + from.slice(4) : from.replace("flavour:", "flavour ");
  }

  let config = null;
  async function showConfig(job) {
    config = null;
    $("run-config-table").querySelector("tbody").replaceChildren();
    $("run-config").hidden = job.kind === "try" || !job.run_dir;
    if ($("run-config").hidden) return;
    const result = await api("GET", "/api/jobs/" + job.id + "/config");
    if (current !== job.id) return;
    // a run writes its record as it starts: until then, asked again on the job's next change
    if (result.ok || !active) configShown = job.id;
    if (!result.ok) { $("run-config-note").textContent = message(result); return; }
    config = result.data;
    drawConfig();
  }

  function drawConfig() {
    if (!config) return;
    const all = $("run-config-all").checked;
    const rows = Object.entries(config.settings).filter(([, s]) => all || s.source !== "default");
    $("run-config-note").textContent = "Environment " + config.environment + ": " + rows.length + " option(s) shown"
      + (all ? "" : " (those not left at their default)") + "; " + config.datasets.length + " dataset(s)."
      + (config.lycoris_config ? " LyCORIS: " + JSON.stringify(config.lycoris_config) : "");
    $("run-config-table").querySelector("tbody").replaceChildren(...rows.map(([key, s]) => el("tr", {},
      el("td", { text: config.labels[key] || key, title: key }), el("td", {}, el("code", { text: shown(s.value) })),
      el("td", { text: sourceName(s.source) }))));
  }
  $("run-config-all").addEventListener("change", drawConfig);

  // ---- two runs compared
  function chosenRuns() {
    return [...document.querySelectorAll("#history input.compare:checked")].map((box) => Number(box.value)).sort((a, b) => a - b);
  }

  function updateCompare() {
    const chosen = chosenRuns();
    $("compare-runs").disabled = chosen.length !== 2;
    $("compare-hint").textContent = chosen.length === 2 ? "Runs #" + chosen[0] + " and #" + chosen[1] + " chosen."
      : "Tick two training runs to compare their settings" + (chosen.length ? " (" + chosen.length + " ticked)." : ".");
  }

  async function compareRuns() {
    const [a, b] = chosenRuns();
    const result = await api("GET", "/api/jobs/compare?a=" + a + "&b=" + b);
    if (!result.ok) { window.ST.toast(message(result), "error"); return; }
    const data = result.data;
    const head = (first) => el("tr", {}, el("th", { scope: "col", text: first }),
      ...data.jobs.map((j, i) => el("th", { scope: "col", text: "Job #" + j.id + " · " + data.environments[i] })));
    const outcome = [["Outcome", (j) => j.status + (j.error ? ": " + j.error : "")],
      ["Steps", (j) => String(j.step || 0) + (j.total_steps ? " / " + j.total_steps : "")],
      ["Last loss", (j) => fmt(j.loss)],
      ["Duration", (j) => (j.started_at && j.ended_at ? eta(j.ended_at - j.started_at) : "—")]];
    $("comparison-summary").querySelector("thead").replaceChildren(head(""));
    $("comparison-summary").querySelector("tbody").replaceChildren(...outcome.map(([label, value]) =>
      el("tr", {}, el("th", { scope: "row", text: label }), ...data.jobs.map((j) => el("td", { text: value(j) })))));
    $("comparison-settings").querySelector("thead").replaceChildren(head("Setting"));
    $("comparison-settings").querySelector("tbody").replaceChildren(...data.settings.map((row) => el("tr", {},
      el("td", { text: row.label, title: row.key }),
      el("td", {}, el("code", { text: shown(row.a) }), " ", el("span", { class: "muted", text: "(" + sourceName(row.source_a) + ")" })),
      el("td", {}, el("code", { text: shown(row.b) }), " ", el("span", { class: "muted", text: "(" + sourceName(row.source_b) + ")" })))));
    $("comparison-data").textContent = (data.settings.length ? data.settings.length + " setting(s) differ. " : "Every setting is the same. ")
      + (data.datasets.same ? "Same datasets." : "The datasets differ.")
      + (data.lycoris_config.same ? "" : " The LyCORIS configs differ.");
    $("comparison").hidden = false;
    $("comparison").scrollIntoView();
  }
  $("compare-runs").addEventListener("click", compareRuns);

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
      const ticked = new Set(chosenRuns());
      $("history").querySelector("tbody").replaceChildren(...history.data.jobs.map((j) => {
        const open = el("button", { type: "button", text: "Show job #" + j.id });
        open.addEventListener("click", () => { pinned = j.id; refresh(); root.scrollIntoView(); });
        const chosen = el("input", { type: "checkbox", class: "compare", value: String(j.id),
          "aria-label": "Compare job #" + j.id, checked: ticked.has(j.id), disabled: j.kind === "try" });
        chosen.addEventListener("change", updateCompare);
        return el("tr", { dataset: { job: String(j.id), total: j.total_steps || "" } }, el("td", {}, chosen), el("td", { text: "#" + j.id }),
          el("td", { text: j.environment + (j.kind === "try" ? " (try)" : "") }), el("td", { text: j.owner || "server" }),
          el("td", { text: j.status + (j.error ? ": " + j.error : "") }),
          el("td", { class: "steps", text: j.kind === "try" ? "—" : String(j.step || 0) + (j.total_steps ? " / " + j.total_steps : "") }),
          el("td", {}, open));
      }));
      updateCompare();
    }
  }

  function historyStep(data) {
    // the history row follows the live steps too, so it never says less than the panel
    const row = document.querySelector('#history tr[data-job="' + data.job_id + '"]');
    if (row) row.querySelector(".steps").textContent = data.step + (row.dataset.total ? " / " + row.dataset.total : "");
  }

  function onEvent(data) {
    if (data.event === "log") {  // frequent: never a reason to reload the page's data
      if (data.job_id === current) appendLog(data);
      return;
    }
    if (data.event === "step") historyStep(data);
    if (current === null || data.job_id !== current) { refresh(); return; }
    if (data.event === "step") {
      curve.push({ step: data.step, loss: data.loss, lr: data.lr });
      drawChart();
      showStep(data.step);
      $("st-phase").textContent = "training";
      $("st-cache").textContent = "—";
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
