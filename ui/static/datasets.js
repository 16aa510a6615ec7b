// Dataset wizard: browse (confined to the datasets folder by the server), create folders, upload with progress,
// check resolution and captions with a preview, and save the dataset into the active environment.
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
    if (!chosen) { box.replaceChildren(el("p", { class: "error", text: "Choose a folder first." })); return; }
    const query = new URLSearchParams(Object.assign({ path: chosen }, settings()));
    const result = await api("GET", "/api/datasets/scan?" + query.toString());
    if (!result.ok) { box.replaceChildren(el("p", { class: "error", text: message(result) })); return; }
    const d = result.data;
    box.replaceChildren(
      el("p", { id: "scan-summary", text: d.images + " images, " + d.usable + " usable; " + d.too_small +
        " below the minimum size will be skipped (never upscaled); " + d.no_caption + " without a caption." }),
      el("div", { class: "gallery" }, d.preview.map((pair) => el("figure", {},
        el("img", { src: "/api/datasets/file?path=" + encodeURIComponent(pair.image), alt: pair.caption }),
        el("figcaption", { text: pair.caption })))));
  });

  if ($("ds-save")) {
    $("ds-save").addEventListener("click", async () => {
      if (!chosen) { say("ds-status", "Choose a folder first.", true); return; }
      const base = "/api/environments/" + encodeURIComponent(env) + "/datasets";
      const current = await api("GET", base);
      const id = $("ds-id").value.trim();
      const s = settings();
      const entry = { id: id, type: "local", instance_data_dir: root.dataset.root + "/" + chosen,
        caption_strategy: s.caption_strategy, resolution: Number(s.resolution), resolution_type: s.resolution_type,
        crop: $("ds-crop").checked, cache_dir_vae: "cache/" + env + "/vae-" + id };
      if (s.minimum_image_size) entry.minimum_image_size = Number(s.minimum_image_size);
      if (s.caption_strategy === "instanceprompt") entry.instance_prompt = s.instance_prompt;
      const kept = (current.ok ? current.data.datasets : []).filter((d) => d.dataset_type === "text_embeds");
      if (!kept.length) kept.push({ id: "text-embeds", type: "local", dataset_type: "text_embeds", default: true, cache_dir: "cache/" + env + "/text" });
      const result = await api("PUT", base, { datasets: [entry].concat(kept) });
      say("ds-status", result.ok ? "Saved to " + result.data.file : message(result), !result.ok);
    });
  }

  api("GET", "/api/datasets/browse").then((result) => { if (result.ok) root.dataset.root = result.data.root; });
})();
