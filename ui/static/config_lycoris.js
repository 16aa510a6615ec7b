// The "lycoris" editor of the Configuration page: the path option itself, and below it the LyCORIS config that path
// names, edited as a form (algorithm, strength, rank and alpha, LoKr's factor, layers) with the family's presets.
// The form's fields come from the server; keys it does not show stay in "Other keys (JSON)" and are written back as
// they were. Changes are checked by the server as you type and written when the page is saved.
"use strict";

(function () {
  const ST = (window.ST = window.ST || {});
  const editors = (ST.configEditors = ST.configEditors || {});
  const TARGETS = "apply_preset.";

  function idOf(key) { return "lyco-" + key.replace(/[^A-Za-z0-9_-]/g, "-"); }

  // The value a field holds in a config (a key of apply_preset for "apply_preset.<key>").
  function valueIn(config, key) {
    if (!key.startsWith(TARGETS)) return config[key];
    return (config.apply_preset || {})[key.slice(TARGETS.length)];
  }

  // The config without the keys the form shows: what "Other keys (JSON)" holds.
  function others(config, fields) {
    const rest = JSON.parse(JSON.stringify(config || {}));
    fields.forEach((f) => {
      if (!f.key.startsWith(TARGETS)) delete rest[f.key];
      else if (rest.apply_preset && typeof rest.apply_preset === "object") {
        delete rest.apply_preset[f.key.slice(TARGETS.length)];
        if (!Object.keys(rest.apply_preset).length) delete rest.apply_preset;
      }
    });
    return rest;
  }

  function shownText(value) {
    if (value === undefined || value === null) return "";
    return Array.isArray(value) ? value.join(", ") : String(value);
  }

  // Choosing the LyCORIS adapter opens its settings.
  document.addEventListener("change", (event) => {
    if (event.target.id === "opt-lora_type" && event.target.value === "lycoris") {
      document.querySelectorAll("details.lycoris-form").forEach((details) => { details.open = true; });
    }
  });

  editors.lycoris = function (opt, value, ctx) {
    const { el, api, say, message } = ST;
    const path = el("input", { id: ctx.id, name: opt.key, type: "text", value: value === null || value === undefined ? "" : String(value),
      "aria-describedby": ctx.describedBy, disabled: !ctx.canEdit });
    path.addEventListener("input", ctx.onEdit);
    const summary = el("summary", { text: "LyCORIS settings (used when the LoRA type is lycoris)" });
    const body = el("div", { class: "lycoris-body" }, el("p", { class: "muted", text: "Loading the LyCORIS config…" }));
    const details = el("details", { class: "lycoris-form", open: ctx.values.lora_type === "lycoris" }, summary, body);

    let state = null;  // {fields, presets, file, inputs, advanced, touched}
    let timer = null;
    let latestCheck = 0;  // answers arrive in any order: only the newest check's answer is shown

    function read() {
      const raw = path.value.trim();
      return raw === "" ? null : raw;
    }

    // The config the form describes; throws an Error naming the field that cannot become JSON.
    function assemble() {
      let config = {};
      const text = state.advanced.value.trim();
      if (text) {
        try { config = JSON.parse(text); } catch (error) { throw new Error("Other keys: not valid JSON yet: " + error.message); }
        if (!config || typeof config !== "object" || Array.isArray(config)) throw new Error("Other keys: must be a JSON object such as {\"dropout\": 0.1}");
      }
      const result = {};
      state.fields.forEach((f) => {
        const raw = state.inputs[f.key].value.trim();
        if (raw === "") return;
        let typed = raw;
        if (f.kind === "names") typed = raw.split(",").map((s) => s.trim()).filter(Boolean);
        else if (f.kind === "number" || f.kind === "integer") typed = Number.isFinite(Number(raw)) ? Number(raw) : raw;
        if (f.key.startsWith(TARGETS)) {
          result.apply_preset = Object.assign({}, result.apply_preset, { [f.key.slice(TARGETS.length)]: typed });
        } else result[f.key] = typed;
      });
      Object.entries(config).forEach(([key, item]) => {
        if (key === "apply_preset" && item && typeof item === "object" && !Array.isArray(item)) {
          result.apply_preset = Object.assign({}, item, result.apply_preset);
        } else if (!(key in result)) result[key] = item;
      });
      if (!result.algo) throw new Error("Algorithm: choose one (or a preset)");
      return result;
    }

    function showProblems(problems) {
      say(state.errors, problems.join("\n"), true);
    }

    async function check() {
      const ticket = ++latestCheck;
      let config;
      try { config = assemble(); } catch (error) { showProblems([error.message]); return [error.message]; }
      const result = await api("POST", ctx.base + "/lycoris/validate", { config: config });
      const problems = result.ok ? result.data.errors : [message(result)];
      if (ticket === latestCheck) showProblems(problems);  // an older answer would hide a newer problem
      return problems;
    }

    function edited() {
      state.touched = true;
      showApplicable();
      clearTimeout(timer);
      timer = setTimeout(check, 350);
    }

    // Fields of other algorithms are left out unless they hold a value (nothing typed is hidden).
    function showApplicable() {
      const algo = state.inputs.algo.value;
      state.fields.forEach((f) => {
        const input = state.inputs[f.key];
        input.closest(".lyco-field").hidden = Boolean(f.algorithms && algo && !f.algorithms.includes(algo) && !input.value.trim());
      });
    }

    function fill(config) {
      state.fields.forEach((f) => { state.inputs[f.key].value = shownText(valueIn(config || {}, f.key)); });
      state.advanced.value = config && Object.keys(others(config, state.fields)).length
        ? JSON.stringify(others(config, state.fields), null, 2) : "";
      state.advanced.rows = Math.min(12, Math.max(3, state.advanced.value.split("\n").length));
      showApplicable();
    }

    function fieldFor(f) {
      const id = idOf(f.key);
      const help = id + "-help";
      let input;
      if (f.kind === "choice") {
        input = el("select", { id: id, "aria-describedby": help, disabled: !ctx.canEdit });
        input.append(el("option", { value: "", text: f.required ? "(choose)" : "(not set)" }));
        f.choices.forEach((c) => input.append(el("option", { value: c, text: c })));
      } else {
        input = el("input", { id: id, type: "text", "aria-describedby": help, disabled: !ctx.canEdit, autocomplete: "off",
          inputmode: f.kind === "names" ? undefined : "decimal" });
      }
      input.addEventListener(f.kind === "choice" ? "change" : "input", edited);
      state.inputs[f.key] = input;
      return el("div", { class: "lyco-field" }, el("label", { for: id, text: f.label }), input,
        el("span", { class: "help", id: help, text: f.help }));
    }

    function build(view) {
      state = { fields: view.form, presets: view.presets, file: view.file, inputs: {}, touched: false };
      const presetHelp = el("span", { class: "help", id: "lyco-preset-help",
        text: "Fills in the fields with a starting point for this model family; other keys stay." });
      const preset = el("select", { id: "lyco-preset", "aria-describedby": "lyco-preset-help", disabled: !ctx.canEdit },
        el("option", { value: "", text: "(keep the values below)" }),
        view.presets.map((p) => el("option", { value: p.name, text: p.title + " — " + p.description })));
      preset.addEventListener("change", () => {
        const chosen = view.presets.find((p) => p.name === preset.value);
        if (!chosen) return;
        const kept = state.advanced.value;
        fill(chosen.config);
        if (kept.trim()) state.advanced.value = kept;  // the preset sets the form's keys; other keys stay as typed
        edited();
      });
      state.advanced = el("textarea", { id: "lyco-advanced", rows: 4, spellcheck: "false", class: "json",
        "aria-describedby": "lyco-advanced-help", disabled: !ctx.canEdit });
      state.advanced.addEventListener("input", edited);
      state.errors = el("p", { class: "field-error", id: "lyco-errors", role: "alert", hidden: true });
      body.replaceChildren(
        el("p", { class: "help", text: view.config ? "Written to " + view.shown_file + "."
          : "No LyCORIS config yet: choose a preset to start one (written to " + view.shown_file + ")." }),
        el("div", { class: "lyco-field" }, el("label", { for: "lyco-preset", text: "Start from a preset" }), preset, presetHelp),
        el("div", { class: "lyco-fields" }, view.form.map(fieldFor)),
        el("div", { class: "lyco-field" }, el("label", { for: "lyco-advanced", text: "Other keys (JSON)" }), state.advanced,
          el("span", { class: "help", id: "lyco-advanced-help", text: "LyCORIS keys the form does not show (dropout, use_tucker, module_algo_map, …), kept as written." })),
        state.errors);
      fill(view.config);
      if (view.config) summary.textContent = "LyCORIS settings: " + (view.config.algo || "no algorithm");
    }

    api("GET", ctx.base + "/lycoris").then((result) => {
      if (!result.ok) {
        body.replaceChildren(el("p", { class: "error", text: "The LyCORIS config cannot be shown: " + message(result) }));
        return;
      }
      build(result.data);
    });

    ctx.addSave({
      name: "LyCORIS config",
      dirty: () => Boolean(state && state.touched),
      check: () => check(),
      save: async () => {
        const result = await api("PUT", ctx.base + "/lycoris", { config: assemble() });
        if (!result.ok) showProblems(result.data && result.data.errors ? result.data.errors : [message(result)]);
        return result.ok ? null : "LyCORIS config: " + (result.data && result.data.errors ? result.data.errors.join("; ") : message(result));
      },
    });

    return { node: path, after: details, read: read, group: false };
  };
})();
