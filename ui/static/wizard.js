// Training wizard: steps read from the registry catalog; Finish saves through the config API (same validator).
"use strict";

(function () {
  const { api, message, el, say } = window.ST;
  const form = document.getElementById("wizard");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const env = form.dataset.env;
  const base = "/api/environments/" + encodeURIComponent(env);
  const steps = Array.from(form.querySelectorAll(".step"));
  let index = 0;
  let catalog = null;
  let currentValues = {};
  let presetScheduler = null; // the learning-rate preset's scheduler, once one is chosen
  let hasDataset = true; // whether the environment has an image dataset (the review warns when not)
  let lycoris = { presets: [], config: null }; // the environment's LyCORIS presets and current config
  // What the size field sets for each algorithm (LoKr's factor: smaller is larger; the others' rank).
  const LYCORIS_SIZE = { lokr: ["factor", "Factor (smaller means a larger adapter)"], locon: ["linear_dim", "Rank"], loha: ["linear_dim", "Rank"] };

  const checked = (name) => form.querySelector("input[name=" + name + "]:checked").value;
  const family = () => catalog.families.find((f) => f.name === (form.querySelector("input[name=family]:checked") || {}).value);

  function radioChoice(name, value, title, detail, isChecked) {
    return el("label", { class: "choice" }, el("input", { type: "radio", name: name, value: value, checked: isChecked }),
      el("strong", { text: title }), detail ? el("p", { class: "muted", text: detail }) : null);
  }

  function fillFamily() {
    const f = family();
    if (!f) return;
    const chosenFlavour = currentValues.model_flavour || f.default_flavour;
    $("flavours").replaceChildren(...f.flavours.map((fl) => {
      const pre = Object.entries(fl.settings).map(([k, v]) => k + " = " + JSON.stringify(v)).join(", ");
      return radioChoice("flavour", fl.name, fl.name, (fl.description || fl.pretrained) + (pre ? " — pre-enables " + pre : ""), fl.name === chosenFlavour);
    }));
    const chosenPreset = (form.querySelector("input[name=memory]:checked") || {}).value || "";
    $("memory-presets").replaceChildren(radioChoice("memory", "", "Keep the current settings", "No preset: memory options stay as they are.", true),
      ...f.memory_presets.map((p) => radioChoice("memory", p.name, p.name, p.tradeoff + " Sets " + Object.entries(p.settings)
        .map(([k, v]) => k + " = " + JSON.stringify(v)).join(", ") + ".", p.name === chosenPreset)));
    if (chosenPreset && !f.memory_presets.some((p) => p.name === chosenPreset)) form.querySelector("input[name=memory][value='']").checked = true;
    const available = f.precisions.filter((p) => catalog.available_precisions.includes(p));
    $("w-precision").replaceChildren(...available.map((p) => el("option", { value: p, text: p, selected: p === (currentValues.base_model_precision || "no_change") })));
    advise();
  }

  function advise() {
    const f = family();
    const advice = f ? f.discouraged_precisions[$("w-precision").value] : null;
    say("precision-advice", advice ? "Not recommended for " + f.title + ": " + advice : "", false);
  }

  // Only what the wizard changes is written: values equal to the effective ones (defaults, the flavour's, the
  // default environment's) stay inherited instead of being pinned into this environment.
  function values() {
    const chosen = chosenValues();
    return Object.fromEntries(Object.entries(chosen)
      .filter(([key, value]) => JSON.stringify(value) !== JSON.stringify(currentValues[key])));
  }

  function chosenValues() {
    const f = family();
    const v = { model_family: f.name, model_flavour: checked("flavour") };
    const adapter = checked("adapter");
    v.model_type = adapter === "full" ? "full" : "lora";
    if (adapter !== "full") {
      v.lora_type = adapter === "lycoris" ? "lycoris" : "standard";
      v.base_model_precision = $("w-precision").value;
      v.lora_rank = Number($("w-rank").value);
    } else if ($("w-fsdp").checked) v.fsdp_enable = true;
    else if ($("w-deepspeed").value) v.deepspeed_config = $("w-deepspeed").value;
    const n = Number($("w-duration").value);
    if (checked("duration") === "steps") { v.max_train_steps = n; v.num_train_epochs = 0; }
    else { v.num_train_epochs = n; v.max_train_steps = 0; }
    v.push_to_hub = $("w-push").checked;
    if ($("w-hub-id").value.trim()) v.hub_model_id = $("w-hub-id").value.trim();
    if (v.push_to_hub) v.hub_private = $("w-private").checked;
    if ($("w-prompt").value.trim()) v.validation_prompt = $("w-prompt").value.trim();
    v.validation_steps = Number($("w-every").value);
    const trackers = Array.from(form.querySelectorAll("input[name=tracker]:checked")).map((i) => i.value);
    v.report_to = trackers.length ? trackers : ["none"];
    v.learning_rate = Number($("w-lr").value);
    v.train_batch_size = Number($("w-batch").value);
    v.optimizer = $("w-optimizer").value;
    if (presetScheduler) v.lr_scheduler = presetScheduler;
    const memory = (form.querySelector("input[name=memory]:checked") || {}).value;
    const preset = memory ? f.memory_presets.find((p) => p.name === memory) : null;
    if (preset) Object.assign(v, preset.settings);
    return v;
  }

  // Where an effective value comes from, in words (the server's labels: default, flavour:F/V, env:NAME, file).
  function sourceText(source) {
    if (source === "default") return "default";
    if (source.startsWith("flavour:")) return "flavour " + source.slice("flavour:".length);
    if (source === "env:" + env) return "this environment";
    if (source === "env:default") return "default environment";
    if (source.startsWith("env:")) return "environment " + source.slice("env:".length);
    return source;
  }

  function reviewCell(className, value, source, secret) {
    if (!source) return el("td", { class: className }, el("span", { class: "value", text: "(unset)" }));
    const shown = secret ? "(secret)" : value === null || value === undefined ? "none" : JSON.stringify(value);
    return el("td", { class: className }, el("span", { class: "value", text: shown }), " ",
      el("span", { class: "source", text: "(" + sourceText(source) + ")" }));
  }

  const applies = (step) => step.dataset.when !== "lycoris" || checked("adapter") === "lycoris";

  function fillLycoris() {
    const current = lycoris.config ? lycoris.config.algo : "lokr";
    const chosen = (form.querySelector("input[name=lycoris]:checked") || {}).value || current;
    $("lycoris-algos").replaceChildren(...lycoris.presets.map((p) => radioChoice("lycoris", p.name, p.title, p.description, p.name === chosen)));
    form.querySelectorAll("input[name=lycoris]").forEach((r) => r.addEventListener("change", () => sizeFor(true)));
    sizeFor(false);
  }

  // The size field of the chosen algorithm, from the current config when it has that algorithm, else the preset.
  function sizeFor(reset) {
    const algo = (form.querySelector("input[name=lycoris]:checked") || {}).value;
    const size = LYCORIS_SIZE[algo];
    $("lycoris-size-field").hidden = !size;
    if (!size) return;
    $("w-lyco-size-label").textContent = size[1];
    const preset = lycoris.presets.find((p) => p.name === algo);
    const own = !reset && lycoris.config && lycoris.config.algo === algo ? lycoris.config[size[0]] : undefined;
    $("w-lyco-size").value = own !== undefined ? own : preset.config[size[0]];
  }

  // The LyCORIS config the wizard writes: the chosen preset (with the targets of the family saved by then) and size.
  function lycorisConfig(presets) {
    const algo = (form.querySelector("input[name=lycoris]:checked") || {}).value;
    const preset = (presets || lycoris.presets).find((p) => p.name === algo);
    if (!preset) return null;
    const config = JSON.parse(JSON.stringify(preset.config));
    if (LYCORIS_SIZE[algo]) config[LYCORIS_SIZE[algo][0]] = Number($("w-lyco-size").value);
    return config;
  }

  async function review() {
    const result = await api("POST", base + "/config/validate", { values: values() });
    const d = result.data;
    $("diff").replaceChildren(...(d.diff || []).map((row) => el("tr", {}, el("td", { text: row.key }),
      // A value that stays and only changes its source (now written here) is not struck through.
      reviewCell(JSON.stringify(row.old) === JSON.stringify(row.new) && row.old_source ? "old same" : "old", row.old, row.old_source, row.secret),
      reviewCell("new", row.new, row.new_source, row.secret))));
    const problems = Object.entries(d.field_errors || {}).map(([k, m]) => k + ": " + m.join("; ")).concat(d.errors || []);
    say("review-errors", result.ok || result.status === 422 ? problems.join("\n") : message(result), true);
    const lyco = checked("adapter") === "lycoris" ? lycorisConfig() : null;
    say("review-lycoris", lyco ? "lycoris_config.json will be: " + JSON.stringify(lyco) : "", false);
    say("review-warning", hasDataset ? "" : "No dataset is set yet: you can save, but training cannot start until the environment has one (open the dataset wizard).", false);
  }

  // Moves to step ``to``, passing over steps that do not apply (LyCORIS without a LyCORIS adapter) in the direction
  // of travel; the numbering counts only the steps that apply.
  function go(to) {
    const direction = to < index ? -1 : 1;
    index = Math.max(0, Math.min(steps.length - 1, to));
    while (!applies(steps[index]) && index + direction >= 0 && index + direction < steps.length) index += direction;
    const shown = steps.filter(applies);
    steps.forEach((s, i) => { s.hidden = i !== index; });
    $("step-number").textContent = String(shown.indexOf(steps[index]) + 1);
    $("step-count").textContent = String(shown.length);
    $("w-back").disabled = index === 0;
    $("w-next").hidden = index === steps.length - 1;
    $("w-finish").hidden = index !== steps.length - 1;
    if (steps[index].dataset.step === "lycoris" && !form.querySelector("input[name=lycoris]")) fillLycoris();
    if (steps[index].dataset.step === "flavour") fillFamily();
    if (steps[index].dataset.step === "review") review();
    // the step's first control; in a radio group its chosen option, where Tab into the group would land
    let first = steps[index].querySelector("input, select, button");
    if (first && first.type === "radio") first = steps[index].querySelector("input[name=" + first.name + "]:checked") || first;
    if (first) first.focus();
  }

  $("w-back").addEventListener("click", () => go(index - 1));
  $("w-next").addEventListener("click", () => {
    if (!catalog) return;  // still loading
    if (steps[index].dataset.step === "family" && !family()) { say("w-status", "Choose a model family.", true); return; }
    say("w-status", "", false);
    go(index + 1);
  });
  $("w-precision").addEventListener("change", advise);
  form.querySelectorAll("input[name=adapter]").forEach((r) => r.addEventListener("change", () => {
    $("adapter-full").hidden = checked("adapter") !== "full";
    $("adapter-lora").hidden = checked("adapter") === "full";
  }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await api("PATCH", base + "/config", { values: values() });
    if (result.ok && checked("adapter") === "lycoris") {
      // the presets again: they target the blocks of the family just saved
      const fresh = await api("GET", base + "/lycoris");
      const written = await api("PUT", base + "/lycoris", { config: lycorisConfig(fresh.ok ? fresh.data.presets : null) });
      if (!written.ok) { say("w-status", "Settings saved, but not the LyCORIS config: " + ((written.data || {}).errors || [message(written)]).join("; "), true); return; }
    }
    if (result.ok) {
      window.ST.toastNext("Saved " + env + ": ready to train.");
      window.location.assign("/training");
    }
    else { review(); say("w-status", "Not saved: " + message(result), true); }
  });

  // Everything is fetched first and the page filled in one go: the family choices appear (and Next works) only once
  // the wizard knows the environment, so nothing moves the wizard back to its first step after the user went on.
  async function load() {
    const [catalogView, config, lycorisView, datasets] = await Promise.all([api("GET", "/api/wizard/catalog"),
      api("GET", base + "/config"), api("GET", base + "/lycoris"), api("GET", base + "/datasets")]);
    catalog = catalogView.data;
    currentValues = config.ok ? config.data.values : {};
    if (lycorisView.ok) lycoris = lycorisView.data;
    catalog.deepspeed_presets.forEach((p) => $("w-deepspeed").append(el("option", { value: p, text: p })));
    $("trackers").replaceChildren(...catalog.trackers.map((t) => el("label", {}, el("input", { type: "checkbox", name: "tracker", value: t.name,
      checked: (currentValues.report_to || []).includes(t.name) }), " " + t.title)));
    catalog.optimizers.forEach((o) => $("w-optimizer").append(el("option", { value: o, text: o, selected: o === currentValues.optimizer })));
    $("lr-presets").replaceChildren(...catalog.training_presets.map((p) => {
      const button = el("button", { type: "button", text: p.title });
      button.addEventListener("click", () => {
        $("w-lr").value = p.values.learning_rate; $("w-batch").value = p.values.train_batch_size; $("w-optimizer").value = p.values.optimizer;
        presetScheduler = p.values.lr_scheduler || null;  // the preset's schedule goes with its learning rate
      });
      return button;
    }));
    if (currentValues.learning_rate) $("w-lr").value = currentValues.learning_rate;
    if (currentValues.train_batch_size) $("w-batch").value = currentValues.train_batch_size;
    if (currentValues.max_train_steps) $("w-duration").value = currentValues.max_train_steps;
    if (currentValues.validation_prompt) $("w-prompt").value = currentValues.validation_prompt;
    if (currentValues.validation_steps !== undefined) $("w-every").value = currentValues.validation_steps;
    if (currentValues.lora_rank) $("w-rank").value = currentValues.lora_rank;
    $("w-push").checked = Boolean(currentValues.push_to_hub);
    if (currentValues.hub_model_id) $("w-hub-id").value = currentValues.hub_model_id;
    if (currentValues.hub_private === false) $("w-private").checked = false;
    if (currentValues.lora_type === "lycoris" && currentValues.model_type !== "full") form.querySelector("input[name=adapter][value=lycoris]").checked = true;
    const images = datasets.ok ? datasets.data.datasets.filter((d) => d.dataset_type !== "text_embeds") : [];
    hasDataset = images.length > 0;
    $("dataset-now").textContent = images.length ? "Keeping: " + images.map((d) => d.id + " (" + d.instance_data_dir + ")").join(", ") : "No dataset yet.";
    $("families").replaceChildren(...catalog.families.map((f) => radioChoice("family", f.name, f.title, f.description,
      f.name === currentValues.model_family)));
    go(0);
  }
  load();
})();
