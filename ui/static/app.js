// SimpleTuner web UI: sends forms and buttons marked with data-api to the JSON API (no inline scripts anywhere).
"use strict";

(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = () => (meta ? meta.content : "");

  async function call(method, url, body) {
    const headers = { "Accept": "application/json", "X-CSRF-Token": csrf() };
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) {
      const message = data.description || data.title || response.statusText;
      throw new Error(message);
    }
    return data;
  }

  function setPath(target, path, value) {
    const parts = path.split(".");
    let node = target;
    for (let i = 0; i < parts.length - 1; i++) {
      node[parts[i]] = node[parts[i]] || {};
      node = node[parts[i]];
    }
    node[parts[parts.length - 1]] = value;
  }

  function readField(input) {
    const type = input.dataset.type || "text";
    if (type === "bool") return input.checked;
    const raw = input.value;
    if (type === "secret" && raw === "") return undefined;
    if (raw === "" && input.dataset.optional !== undefined) return undefined;
    if (type === "number") return raw === "" ? null : Number(raw);
    if (type === "nullable") return raw === "" ? null : raw;  // a "none" choice clears the value
    if (type === "list") return raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
    if (type === "json") return raw.trim() === "" ? {} : JSON.parse(raw);
    if (type === "multi") return Array.from(input.selectedOptions).map((o) => o.value);
    return raw;
  }

  function collect(form) {
    const body = {};
    form.querySelectorAll("[name]").forEach((input) => {
      const value = readField(input);
      if (value !== undefined) setPath(body, input.name, value);
    });
    return body;
  }

  function show(element, text, isError) {
    if (!element) return;
    element.textContent = text;
    element.classList.toggle("error", Boolean(isError));
    element.hidden = false;
  }

  // A saved change is confirmed by a toast, on this page or (after a reload or redirect) on the next one.
  function after(element, data) {
    const then = element.dataset.then || "reload";
    const saved = element.dataset.saved || "Saved.";
    if (then === "reload") {
      window.ST.toastNext(saved);
      window.location.reload();
    } else if (then === "next") {
      const next = new URLSearchParams(window.location.search).get("next") || "/";
      window.location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");
    } else if (then.startsWith("/")) {
      if (element.dataset.saved) window.ST.toastNext(saved);
      window.location.assign(then);
    } else if (then === "show-key") {
      showKey(data.key);
    } else if (then === "show-result") {
      window.ST.toast((data.ok ? "OK: " : "Failed: ") + data.message, data.ok ? "success" : "error");
    }
  }

  // A new API key is shown once, with a button that copies it; the focus goes to that button (which also brings it
  // into view), and the list's "no key yet" no longer applies.
  function showKey(key) {
    const box = document.getElementById("new-key");
    if (!box) return;
    box.querySelector("code").textContent = key;
    box.hidden = false;
    const none = document.querySelector("#api-keys .empty-state");
    if (none) none.remove();
    document.getElementById("new-key-copy").focus();
  }

  const copy = document.getElementById("new-key-copy");
  if (copy) {
    copy.addEventListener("click", async () => {
      const value = document.querySelector("#new-key code");
      try {
        await navigator.clipboard.writeText(value.textContent);
        window.ST.toast("Copied to the clipboard.");
      } catch (error) {
        const range = document.createRange();  // no clipboard access: select it for Ctrl+C
        range.selectNodeContents(value);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        window.ST.toast("Selected: press Ctrl+C (⌘C) to copy.", "info");
      }
    });
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    const status = form.querySelector(".status");
    try {
      const data = await call(form.dataset.method || "POST", form.dataset.api, collect(form));
      if (status) status.hidden = true;
      after(form, data);
    } catch (error) {
      show(status, error.message, true);
      window.ST.toast("Not saved: " + error.message, "error");
    }
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-api]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.confirm) {
      const sure = await window.ST.confirm({ title: button.dataset.confirm, message: button.dataset.confirmDetail || "",
        confirm: button.textContent.trim(), danger: button.classList.contains("danger") });
      if (!sure) return;
    }
    const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
    try {
      const data = await call(button.dataset.method || "POST", button.dataset.api, body);
      after(button, data);
    } catch (error) {
      window.ST.toast(error.message, "error");
    }
  });
})();
