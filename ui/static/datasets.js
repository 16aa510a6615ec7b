// Dataset wizard: browse (confined to the datasets folder by the server), create folders, upload with progress,
// or remote storage from a backend plugin (its options rendered from their metadata, a connection test); check
// resolution and captions with a preview, and save the dataset into the active environment.
"use strict";

(function () {
  const { api, message, el, say, upload } = window.ST;
  const root = document.getElementById("datasets");
  if (!root) return;
  const env = root.dataset.env;
  let browsing = "";
  let chosen = null;
  const $ = (id) => document.getElementById(id);

  async function show(path) {
    const result = await api("GET", "/api/datasets/browse?path=" + encodeURIComponent(path));
    if (!result.ok) { say("browser-status", message(result), true); return; }
    browsing = result.data.path;
    $("browser-path").textContent = "/" + browsing;
    const items = [];
    if (result.data.parent !== null) {
      const up = el("button", { type: "button", text: "↑ up" });
      up.addEventListener("click", () => show(result.data.parent));
      items.push(el("li", {}, up));
    }
    result.data.folders.forEach((folder) => {
      const open = el("button", { type: "button", text: "📁 " + folder.name + " (" + folder.images + " images)" });
      open.addEventListener("click", () => show(folder.path));
      items.push(el("li", {}, open));
    });
    result.data.files.slice(0, 50).forEach((file) => items.push(el("li", { class: "muted", text: file.name })));
    $("browser-list").replaceChildren(...items);
    say("browser-status", "", false);
  }

  function choose(path) {
    chosen = path;
    $("chosen").textContent = path ? "/" + path : "none";
  }

  // Remote storage: the backends the server offers, each option rendered from its metadata (no per-plugin code).
  const backends = {};
  const storage = () => backends[$("ds-storage").value] || null;

  function optionInput(opt) {
    const attrs = { id: "ro-" + opt.key, "aria-describedby": "ro-help-" + opt.key, dataset: { key: opt.key } };
    if (opt.type === "bool") return el("input", Object.assign({ type: "checkbox", checked: Boolean(opt.default) }, attrs));
    if (opt.choices) {
      const select = el("select", attrs);
      if (opt.nullable) select.append(el("option", { value: "", text: "(not set)" }));
      opt.choices.forEach((c) => select.append(el("option", { value: String(c), text: String(c), selected: c === opt.default })));
      return select;
    }
    if (opt.secret) return el("input", Object.assign({ type: "password", autocomplete: "off", placeholder: "not shown; empty: from the server's environment" }, attrs));
    const shown = opt.default === null || opt.default === undefined ? "" : String(opt.default);
    return el("input", Object.assign({ type: "text", value: shown,
      inputmode: (opt.type === "int" || opt.type === "float") ? "decimal" : undefined }, attrs));
  }

  function showStorage() {
    const backend = storage();
    $("local-storage").hidden = Boolean(backend);
    $("remote-storage").hidden = !backend;
    $("scan").textContent = backend ? "Check the images" : "Check the folder";
    if (!backend) return;
    $("remote-description").textContent = backend.description;
    $("remote-options").replaceChildren(...backend.options.map((opt) => el("div", { class: "field" },
      el("label", { for: "ro-" + opt.key, text: opt.label }), optionInput(opt),
      el("span", { class: "help", id: "ro-help-" + opt.key, text: opt.help }))));
    say("remote-status", "", false);
  }

  function remoteOptions() {
    const options = {};
    storage().options.forEach((opt) => {
      const input = $("ro-" + opt.key);
      if (opt.type === "bool") { if (input.checked !== Boolean(opt.default)) options[opt.key] = input.checked; return; }
      const raw = input.value.trim();
      if (raw === "" || raw === String(opt.default === null ? "" : opt.default)) return;
      options[opt.key] = /^(int|float)( or |$)/.test(opt.type) && !isNaN(Number(raw)) ? Number(raw) : raw;
    });
    return options;
  }

  function remoteRequest(extra) {
    return Object.assign({ type: storage().name, options: remoteOptions(), path: $("remote-path").value.trim(), env: env || undefined }, extra || {});
  }

  async function testConnection() {
    say("remote-status", "Testing…", false);
    const result = await api("POST", "/api/datasets/remote/test", remoteRequest());
    say("remote-status", result.ok ? "Connected: " + result.data.location : message(result), !result.ok);
    return result.ok;
  }

  $("ds-storage").addEventListener("change", showStorage);
  $("remote-test").addEventListener("click", testConnection);
  api("GET", "/api/datasets/backends").then((result) => {
    if (!result.ok) return;
    result.data.backends.filter((b) => !b.local_paths).forEach((b) => {
      backends[b.name] = b;
      $("ds-storage").append(el("option", { value: b.name, text: b.title }));
    });
  });

  $("browse-open").addEventListener("click", () => { $("browser").showModal(); show(chosen || browsing); });
  $("browser-close").addEventListener("click", () => $("browser").close());
  $("browser-choose").addEventListener("click", () => { choose(browsing); $("browser").close(); });

  if ($("new-folder-create")) {
    $("new-folder-create").addEventListener("click", async () => {
      const result = await api("POST", "/api/datasets/folders", { parent: chosen || browsing, name: $("new-folder").value.trim() });
      if (result.ok) { choose(result.data.path); browsing = result.data.path; say("upload-status", "Created /" + result.data.path, false); }
      else say("upload-status", message(result), true);
    });
    $("upload-start").addEventListener("click", async () => {
      const files = Array.from($("upload-files").files);
      if (!chosen) { say("upload-status", "Choose or create a folder first.", true); return; }
      if (!files.length) { say("upload-status", "Pick files to upload.", true); return; }
      const bar = $("upload-progress");
      bar.hidden = false;
      let count = 0;
      for (const [index, file] of files.entries()) {
        const url = "/api/datasets/upload?path=" + encodeURIComponent(chosen) + "&name=" + encodeURIComponent(file.name);
        const result = await upload(url, file, (part) => { bar.value = (index + part) / files.length; });
        if (!result.ok) { say("upload-status", file.name + ": " + message(result), true); return; }
        count += result.data.files.length;
      }
      bar.value = 1;
      say("upload-status", "Uploaded " + count + " file(s) into /" + chosen + ".", false);
    });
  }

  function settings() {
    return { resolution: $("ds-resolution").value, resolution_type: $("ds-resolution-type").value,
      minimum_image_size: $("ds-minimum").value, caption_strategy: $("ds-caption").value,
      instance_prompt: $("ds-prompt").value };
  }

  $("scan").addEventListener("click", async () => {
    const box = $("scan-result");
    let result;
    if (storage()) {
      box.replaceChildren(el("p", { text: "Reading the images…" }));
      const s = settings();
      result = await api("POST", "/api/datasets/remote/scan", remoteRequest({ resolution: s.resolution,
        resolution_type: s.resolution_type, minimum_image_size: s.minimum_image_size,
        caption_strategy: s.caption_strategy, instance_prompt: s.instance_prompt }));
    } else {
      if (!chosen) { box.replaceChildren(el("p", { class: "error", text: "Choose a folder first." })); return; }
      const query = new URLSearchParams(Object.assign({ path: chosen }, settings()));
      result = await api("GET", "/api/datasets/scan?" + query.toString());
    }
    if (!result.ok) { box.replaceChildren(el("p", { class: "error", text: message(result) })); return; }
    const d = result.data;
    const partial = d.scanned !== undefined && d.scanned < d.images ? " (of the first " + d.scanned + " read)" : "";
    box.replaceChildren(
      el("p", { id: "scan-summary", text: d.images + " images" + partial + ", " + d.usable + " usable; " + d.too_small +
        " below the minimum size will be skipped (never upscaled); " + d.no_caption + " without a caption." }),
      el("div", { class: "gallery" }, d.preview.map((pair) => el("figure", {},
        el("img", { src: pair.src || "/api/datasets/file?path=" + encodeURIComponent(pair.image), alt: pair.caption }),
        el("figcaption", { text: pair.caption })))));
  });

  if ($("ds-save")) {
    $("ds-save").addEventListener("click", async () => {
      const remote = storage();
      if (!remote && !chosen) { say("ds-status", "Choose a folder first.", true); return; }
      if (remote && !(await testConnection())) { say("ds-status", "Fix the storage settings first (see Test connection).", true); return; }
      const base = "/api/environments/" + encodeURIComponent(env) + "/datasets";
      const current = await api("GET", base);
      const id = $("ds-id").value.trim();
      const s = settings();
      const entry = { id: id, type: "local", instance_data_dir: root.dataset.root + "/" + chosen,
        caption_strategy: s.caption_strategy, resolution: Number(s.resolution), resolution_type: s.resolution_type,
        crop: $("ds-crop").checked, cache_dir_vae: "cache/" + env + "/vae-" + id };
      if (remote) {
        // every path of a remote entry is a key prefix under its data prefix; an unset cache stays on this machine
        Object.assign(entry, { type: remote.name }, remoteOptions());
        delete entry.instance_data_dir;
        delete entry.cache_dir_vae;
        if ($("remote-path").value.trim()) entry.instance_data_dir = $("remote-path").value.trim();
        if ($("remote-caches").value === "remote") entry.cache_dir_vae = "cache/vae/" + id;
      }
      if (s.minimum_image_size) entry.minimum_image_size = Number(s.minimum_image_size);
      if (s.caption_strategy === "instanceprompt") entry.instance_prompt = s.instance_prompt;
      const kept = (current.ok ? current.data.datasets : []).filter((d) => d.dataset_type === "text_embeds");
      if (!kept.length) kept.push({ id: "text-embeds", type: "local", dataset_type: "text_embeds", default: true, cache_dir: "cache/" + env + "/text" });
      const result = await api("PUT", base, { datasets: [entry].concat(kept) });
      say("ds-status", result.ok ? "Saved to " + result.data.file : message(result), !result.ok);
      window.ST.toast(result.ok ? "Dataset saved to " + env + "." : "Not saved: " + message(result), result.ok ? "success" : "error");
    });
  }

  api("GET", "/api/datasets/browse").then((result) => { if (result.ok) root.dataset.root = result.data.root; });
})();
