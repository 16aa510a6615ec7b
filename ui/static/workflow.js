// SimpleTuner workflow helpers shared by the onboarding, configuration, wizard, dataset and training pages, and the
// header's environment switcher. Loaded on every page; page scripts use window.ST.
"use strict";

(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');

  // Calls the JSON API; resolves to {ok, status, data} so callers can show 422 problems next to fields.
  async function api(method, url, body) {
    const headers = { "Accept": "application/json", "X-CSRF-Token": meta ? meta.content : "" };
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { ok: response.ok, status: response.status, data: data };
  }

  function message(result) {
    const d = result.data || {};
    if (d.problems) return d.problems.join("\n");
    if (d.errors && d.errors.length) return d.errors.join("\n");
    return d.description || d.title || ("request failed (" + result.status + ")");
  }

  // Uploads a File with progress (fetch has no upload progress); resolves to {ok, status, data}.
  function upload(url, file, onProgress) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("X-CSRF-Token", meta ? meta.content : "");
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
      xhr.addEventListener("load", () => {
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = {}; }
        resolve({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status, data: data });
      });
      xhr.addEventListener("error", () => resolve({ ok: false, status: 0, data: { description: "network error" } }));
      xhr.send(file);
    });
  }

  // Builds an element: el("p", {class: "x", text: "..."}, child, ...). Text is always set as text, never HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (value === undefined || value === null || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    children.flat().forEach((child) => {
      if (child !== null && child !== undefined) node.append(child);
    });
    return node;
  }

  function say(target, text, isError) {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
    node.hidden = !text;
  }

  function activeEnvironment() {
    const params = new URLSearchParams(window.location.search);
    const select = document.getElementById("env-switcher");
    return params.get("env") || (select ? select.dataset.active : "") || "";
  }

  async function fillSwitcher() {
    const select = document.getElementById("env-switcher");
    if (!select) return;
    const result = await api("GET", "/api/environments");
    if (!result.ok) return;
    const active = activeEnvironment() || result.data.active || "";
    select.replaceChildren(el("option", { value: "", text: result.data.environments.length ? "choose…" : "none yet" }));
    result.data.environments.forEach((env) => {
      select.append(el("option", { value: env.name, text: env.name, selected: env.name === active }));
    });
    if (select.dataset.bound) return;  // filled again after a page created an environment: one listener
    select.dataset.bound = "1";
    select.addEventListener("change", async () => {
      if (!select.value) return;
      await api("PUT", "/api/active-environment", { name: select.value });
      const url = new URL(window.location.href);
      url.searchParams.delete("env");
      window.location.assign(url.pathname + url.search);
    });
  }

  window.ST = Object.assign(window.ST || {}, { api: api, message: message, upload: upload, el: el, say: say,
    activeEnvironment: activeEnvironment, refreshEnvironments: fillSwitcher });
  document.addEventListener("DOMContentLoaded", fillSwitcher);
})();
