// Configuration tabs: fields rendered from the option metadata the server sends (core and plugins alike), with the
// structured editor an option's metadata names (config_prompts.js, config_lycoris.js) and the approval state of
// privileged options (config_approvals.js); checked by the server's validator as you type, saved together; memory
// presets applied from the Memory tab.
"use strict";

(function () {
  const { api, message, el, say } = window.ST;
  const root = document.getElementById("config");
  if (!root) return;
  const env = root.dataset.env;
  const canEdit = root.dataset.canEdit === "yes";
  const base = "/api/environments/" + encodeURIComponent(env);
  const changed = {};
  const localErrors = new Map();  // key → what to fix before the value can even be sent (bad JSON, duplicate names)
  const saves = [];  // files a structured editor writes besides config.json (the LyCORIS config)
  const approvals = window.ST.configApprovals;
  let view = null;
  let timer = null;

  function inputFor(opt, value) {
    const id = "opt-" + opt.key;
    const common = { id: id, name: opt.key, "aria-describedby": describedBy(opt), disabled: !canEdit || refused(opt) };
    if (opt.type === "bool") return el("input", Object.assign({ type: "checkbox", checked: Boolean(value) }, common));
    if (opt.choices && !opt.type.startsWith("list")) {
      const select = el("select", common);
      if (opt.nullable) select.append(el("option", { value: "", text: "(not set)" }));
      opt.choices.forEach((c) => select.append(el("option", { value: String(c), text: String(c), selected: String(c) === String(value) })));
      return select;
    }
    if (opt.secret) return el("input", Object.assign({ type: "password", autocomplete: "off",
      placeholder: view.secrets_set.includes(opt.key) ? "set (leave empty to keep)" : "not set" }, common));
    if (opt.type === "object") {  // a JSON object without a structured editor: edited as JSON text
      return el("textarea", Object.assign({ rows: 6, spellcheck: "false", class: "json",
        text: value === null || value === undefined ? "" : JSON.stringify(value, null, 2) }, common));
    }
    let shown = value;
    if (Array.isArray(value)) shown = value.join(", ");
    return el("input", Object.assign({ type: "text", value: shown === null || shown === undefined ? "" : String(shown),
      inputmode: (opt.type === "int" || opt.type === "float") ? "decimal" : undefined }, common));
  }

  function describedBy(opt) {
    return "help-" + opt.key + (opt.trust === "privileged" ? " appr-" + opt.key : "") + " err-" + opt.key;
  }

  // A privileged option the viewer may not change (the server refuses it): shown, not editable.
  function refused(opt) {
    return opt.trust === "privileged" && view.approvals && view.approvals.on_change === "refused";
  }

  function readInput(opt, input) {
    if (opt.type === "bool") return input.checked;
    const raw = input.value.trim();
    if (raw === "") return opt.nullable ? null : raw;
    if (opt.type === "object") {
      try { return JSON.parse(raw); } catch (error) { throw new Error("not valid JSON yet: " + error.message); }
    }
    if (opt.type.startsWith("list")) return raw.split(",").map((s) => s.trim()).filter((s) => s);
    if (/^(int|float)( or |$)/.test(opt.type) && !isNaN(Number(raw))) return Number(raw);
    return raw;
  }

  // The control of an option: the structured editor its metadata names (see ST.configEditors), else a plain field.
  // Either way ``read()`` gives the value to save or throws an Error saying what to fix; ``after`` is what the
  // editor shows below the option's help (the LyCORIS form under the path of its file).
  function editorFor(opt, value, onEdit) {
    const make = opt.editor && window.ST.configEditors && window.ST.configEditors[opt.editor];
    if (make) {
      return make(opt, value, { id: "opt-" + opt.key, labelId: "label-" + opt.key, describedBy: describedBy(opt),
        canEdit: canEdit && !refused(opt), onEdit: onEdit, base: base, values: view.values,
        addSave: (save) => saves.push(save) });
    }
    const input = inputFor(opt, value);
    input.addEventListener(opt.type === "bool" || input.tagName === "SELECT" ? "change" : "input", onEdit);
    return { node: input, read: () => readInput(opt, input), group: false };
  }

  function field(opt) {
    const value = view.values[opt.key];
    const source = view.sources[opt.key] || "default";
    const own = view.own_keys.includes(opt.key);
    const editor = editorFor(opt, value, () => {
      try {
        changed[opt.key] = editor.read();
        localErrors.delete(opt.key);
      } catch (error) {
        delete changed[opt.key];
        localErrors.set(opt.key, error.message);
        say("err-" + opt.key, error.message, true);
        return;
      }
      if (opt.trust === "privileged") approvals.changed(opt, view.approvals);
      clearTimeout(timer);
      timer = setTimeout(validate, 350);
    });
    const owner = opt.owner === "core" ? null : el("span", { class: "badge", text: opt.owner });
    const label = editor.group ? el("span", { class: "label", id: "label-" + opt.key, text: opt.label })
      : el("label", { for: "opt-" + opt.key, id: "label-" + opt.key, text: opt.label });
    const approval = opt.trust === "privileged" && view.approvals ? approvals.line(opt, view.approvals, load) : null;
    return el("div", { class: "field", dataset: { key: opt.key } },
      label,
      el("div", { class: "control" }, editor.node,
        el("span", { class: "source" + (own ? " own" : ""), id: "src-" + opt.key,
          text: own ? "set here" : "from " + source }, owner ? " " : null, owner),
        el("span", { class: "help", id: "help-" + opt.key, text: opt.help }),
        approval,
        el("span", { class: "field-error", id: "err-" + opt.key, role: "alert", hidden: true }),
        editor.after || null));
  }

  function showErrors(fieldErrors, errors) {
    // only the options' own error lines: a structured editor's problems (the LyCORIS form's) are its own to clear
    document.querySelectorAll('.field-error[id^="err-"]').forEach((node) => say(node, "", false));
    document.querySelectorAll("[role=tab]").forEach((tab) => tab.classList.remove("error"));
    const mark = (node, text) => {
      say(node, text, true);
      const panel = node.closest("[role=tabpanel]");
      document.getElementById("tab-" + panel.dataset.section).classList.add("error");
    };
    Object.entries(fieldErrors || {}).forEach(([key, messages]) => {
      const node = document.getElementById("err-" + key);
      if (node) mark(node, messages.join("; "));
      else (errors = errors || []).push(key + ": " + messages.join("; "));
    });
    localErrors.forEach((text, key) => mark(document.getElementById("err-" + key), text));
    say("config-errors", (errors || []).join("\n"), true);
  }

  let latestValidation = 0;  // answers arrive in any order: only the newest one is shown
  async function validate() {
    const ticket = ++latestValidation;
    const result = await api("POST", base + "/config/validate", { values: changed });
    if (ticket !== latestValidation) return;  // an older answer would hide a newer problem
    if (result.status === 422 || result.ok) showErrors(result.data.field_errors, result.data.errors);
  }

  async function load() {
    const result = await api("GET", base + "/config");
    if (!result.data.sections) { say("config-errors", message(result), true); return; }
    view = result.data;
    saves.length = 0;
    localErrors.clear();
    Object.keys(changed).forEach((k) => delete changed[k]);  // the fields now show the saved values
    view.sections.forEach((section) => {
      const panel = document.querySelector('[role=tabpanel][data-section="' + section.key + '"] .fields');
      if (panel) panel.replaceChildren(...section.options.map(field));
    });
    showErrors(view.field_errors, view.errors);
    approvals.summary(document.getElementById("config-approval"), view.approvals, load);
    // what `simpletuner config check` warns about (e.g. SimpleTuner keys that have no effect here)
    say("config-warnings", (view.warnings || []).map((w) => "warning: " + w).join("\n"), false);
    loadPresets();
  }

  async function loadPresets() {
    const box = document.getElementById("presets");
    const result = await api("GET", base + "/presets");
    if (!box || !result.ok || !result.data.presets.length) return;
    box.hidden = false;
    box.querySelector(".choices").replaceChildren(...result.data.presets.map((preset) => {
      const settings = Object.entries(preset.settings).map(([k, v]) => k + " = " + JSON.stringify(v)).join(", ");
      const button = el("button", { type: "button", text: "Apply " + preset.name, disabled: !canEdit });
      button.addEventListener("click", async () => {
        const applied = await api("POST", base + "/presets", { preset: preset.name });
        if (applied.ok) {
          window.ST.toastNext("Applied the " + preset.name + " preset.");
          window.location.reload();
        } else say("config-errors", message(applied), true);
      });
      return el("div", { class: "choice" }, el("strong", { text: preset.name }), el("p", { text: preset.tradeoff }),
        el("p", { class: "muted", text: settings || "no changes" }), button);
    }));
  }

  // Tabs: click or arrow keys, as the WAI-ARIA tabs pattern describes.
  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  function select(tab) {
    tabs.forEach((t) => {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    });
    tab.focus();
  }
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight") select(tabs[(index + 1) % tabs.length]);
      if (event.key === "ArrowLeft") select(tabs[(index - 1 + tabs.length) % tabs.length]);
    });
  });

  function refuse(text) {
    say("config-status", text, true);
    window.ST.toast(text, "error");
  }

  // Saves config.json and what the structured editors write besides it: everything is checked first, so a problem
  // anywhere saves nothing.
  document.getElementById("config-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);  // the save checks everything itself: no check as you type is left to answer after it
    say("config-status", "Saving…", false);
    if (localErrors.size) { refuse("Not saved: fix the marked fields."); return; }
    const extra = saves.filter((s) => s.dirty());
    for (const save of extra) {
      const problems = await save.check();
      if (problems.length) { refuse("Not saved: fix the " + save.name + " (" + problems.join("; ") + ")."); return; }
    }
    const count = Object.keys(changed).length;
    if (count || !extra.length) {
      const result = await api("PATCH", base + "/config", { values: changed });
      if (!result.ok) {
        showErrors(result.data.field_errors, result.data.errors || (result.data.description ? [result.data.description] : []));
        refuse("Not saved: fix the marked fields.");
        return;
      }
      Object.keys(changed).forEach((k) => delete changed[k]);
    }
    for (const save of extra) {
      const problem = await save.save();
      if (problem) { refuse((count ? "Settings saved, but not the " : "Not saved: the ") + problem); return; }
    }
    const total = count + extra.length;
    say("config-status", "Saved.", false);
    window.ST.toast("Saved " + (total === 1 ? "1 change" : total + " changes") + " to " + env + ".");
    load();
  });

  load();
})();
