// The "prompt-library" editor of the Configuration page: an object of name → prompt edited as a table, one row per
// prompt with its name, its text and, folded under it, optional settings (seed, size, steps, guidance, negative prompt). A row whose
// settings are all empty is written as a plain prompt string, SimpleTuner's own format; fields the table does not
// know are kept as they are. The server checks the library like any other value.
"use strict";

(function () {
  const ST = (window.ST = window.ST || {});
  const editors = (ST.configEditors = ST.configEditors || {});
  // The settings a library entry may carry besides its prompt, as [field, label, type].
  const SETTINGS = [["seed", "Seed", "int"], ["resolution", "Size", "text"], ["steps", "Steps", "int"],
    ["guidance", "Guidance", "float"], ["negative_prompt", "Negative prompt", "text"]];

  function entryOf(value) {
    if (typeof value === "string") return { prompt: value, extra: {} };
    const entry = Object.assign({}, value || {});
    const prompt = typeof entry.prompt === "string" ? entry.prompt : "";
    delete entry.prompt;
    return { prompt: prompt, extra: entry };
  }

  function settingsText(count) {
    return "Settings" + (count ? " (" + count + " set)" : " (defaults)");
  }

  // A typed number when the text is one, else the text itself (the server then names the problem).
  function typed(raw, type) {
    if (type === "text") return raw;
    const number = Number(raw);
    return raw !== "" && Number.isFinite(number) ? number : raw;
  }

  editors["prompt-library"] = function (opt, value, ctx) {
    const { el } = ST;
    const body = el("tbody");
    const add = el("button", { type: "button", class: "small", text: "Add prompt", disabled: !ctx.canEdit,
      "aria-describedby": ctx.describedBy });
    const empty = el("p", { class: "muted empty-library", text: "No named prompts yet: add one to render it at every validation." });
    const table = el("table", { class: "prompt-table", "aria-labelledby": ctx.labelId },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Prompt" }),
        el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Remove" })))),
      body);
    const node = el("div", { class: "prompt-library", role: "group", "aria-labelledby": ctx.labelId,
      "aria-describedby": ctx.describedBy }, table, empty, add);

    function renumber() {
      Array.from(body.rows).forEach((row, index) => {
        const n = index + 1;
        row.querySelector(".p-name").setAttribute("aria-label", "Name of prompt " + n);
        row.querySelector(".p-text").setAttribute("aria-label", "Text of prompt " + n);
        row.querySelector("summary .sr-only").textContent = " of prompt " + n;
        SETTINGS.forEach(([key, label]) => row.querySelector(".p-" + key).setAttribute("aria-label", label + " of prompt " + n));
        row.querySelector(".p-remove").setAttribute("aria-label", "Remove prompt " + n);
      });
      empty.hidden = body.rows.length > 0;
      table.hidden = body.rows.length === 0;
    }

    function addRow(name, entryValue, focus) {
      const entry = entryOf(entryValue);
      const disabled = !ctx.canEdit;
      const settings = SETTINGS.map(([key, label, type]) => {
        const shown = entry.extra[key];
        return el("label", { class: "p-setting p-setting-" + key }, el("span", { text: label }),
          el("input", { class: "p-" + key, type: "text", disabled: disabled, dataset: { key: key, type: type },
            inputmode: type === "text" ? undefined : "decimal",
            value: shown === undefined || shown === null ? "" : String(shown) }));
      });
      const known = new Set(["prompt"].concat(SETTINGS.map((s) => s[0])));
      const kept = Object.fromEntries(Object.entries(entry.extra).filter(([k]) => !known.has(k)));
      const count = SETTINGS.filter(([key]) => entry.extra[key] !== undefined && entry.extra[key] !== null).length;
      const remove = el("button", { type: "button", class: "small danger p-remove", text: "Remove", disabled: disabled });
      const row = el("tr", { dataset: { kept: JSON.stringify(kept) } },
        el("td", { class: "p-name-cell", dataset: { label: "Name" } }, el("input", { class: "p-name", type: "text", value: name, disabled: disabled,
          autocomplete: "off", spellcheck: "false" })),
        el("td", { class: "p-text-cell", dataset: { label: "Prompt" } },
          el("textarea", { class: "p-text", rows: 2, disabled: disabled, text: entry.prompt }),
          el("details", {}, el("summary", {}, el("span", { class: "p-count", text: settingsText(count) }),
            el("span", { class: "sr-only" })), el("div", { class: "p-settings" }, settings))),
        el("td", { class: "p-remove-cell" }, remove));
      remove.addEventListener("click", () => {
        const next = row.nextElementSibling || row.previousElementSibling;
        row.remove();
        renumber();
        (next ? next.querySelector(".p-name") : add).focus();
        ctx.onEdit();
      });
      row.addEventListener("input", () => {
        const set = SETTINGS.filter(([key]) => row.querySelector(".p-" + key).value.trim() !== "").length;
        row.querySelector(".p-count").textContent = settingsText(set);
        ctx.onEdit();
      });
      body.append(row);
      renumber();
      if (focus) row.querySelector(".p-name").focus();
    }

    Object.entries(value && typeof value === "object" ? value : {}).forEach(([name, entry]) => addRow(name, entry, false));
    renumber();
    add.addEventListener("click", () => { addRow("", "", true); ctx.onEdit(); });

    // The library the rows describe; throws an Error naming the row when two rows share a name (an object cannot
    // hold both, and dropping one would lose it). Rows left entirely empty are not part of it.
    function read() {
      const library = {};
      const rows = Array.from(body.rows);
      for (let index = 0; index < rows.length; index++) {
        const row = rows[index];
        const name = row.querySelector(".p-name").value.trim();
        const prompt = row.querySelector(".p-text").value;
        const extra = JSON.parse(row.dataset.kept || "{}");
        SETTINGS.forEach(([key, , type]) => {
          const raw = row.querySelector(".p-" + key).value.trim();
          if (raw !== "") extra[key] = typed(raw, type);
        });
        if (!name && !prompt.trim() && !Object.keys(extra).length) continue;
        if (Object.prototype.hasOwnProperty.call(library, name)) {
          throw new Error("prompt " + (index + 1) + ": the name " + JSON.stringify(name) + " is used twice; give each prompt its own name");
        }
        library[name] = Object.keys(extra).length ? Object.assign({ prompt: prompt }, extra) : prompt;
      }
      return library;
    }

    return { node: node, read: read, group: true };
  };
})();
