// Manage Configs: list, create, duplicate, rename, download, upload and delete environments; review and approve
// their privileged values; share them.
"use strict";

(function () {
  const { api, message, el, say } = window.ST;
  const canEdit = document.getElementById("can-edit").dataset.value === "yes";

  function action(label, handler, extra) {
    const button = el("button", Object.assign({ type: "button", text: label }, extra || {}));
    button.addEventListener("click", handler);
    return button;
  }

  async function run(promise) {
    const result = await promise;
    if (!result.ok) say("env-status", message(result), true);
    else window.location.reload();
  }

  const APPROVAL = { none: "none", approved: "approved", waiting: "waiting for approval" };
  let reviewed = null;

  async function review(name) {
    const result = await api("GET", "/api/environments/" + encodeURIComponent(name) + "/access");
    if (!result.ok) { say("env-status", message(result), true); return; }
    const access = result.data;
    reviewed = access;
    document.getElementById("review-name").textContent = name;
    const rows = [];
    Object.entries(access.privileged).forEach(([part, values]) => Object.entries(values).forEach(([key, value]) =>
      rows.push(el("tr", {}, el("td", { text: part }), el("td", {}, el("code", { text: key })),
        el("td", {}, el("code", { text: typeof value === "string" ? value : JSON.stringify(value) }))))));
    document.querySelector("#review-table tbody").replaceChildren(...rows);
    say("review-state", access.approved ? "Approved by " + access.approved_by + "." : "Waiting for approval.", false);
    document.getElementById("env-review").hidden = false;
    document.getElementById("env-review").scrollIntoView();
  }

  const approve = document.getElementById("review-approve");
  if (approve) {
    approve.addEventListener("click", async () => {
      const result = await api("POST", "/api/environments/" + encodeURIComponent(reviewed.environment) + "/approve",
        { digest: reviewed.digest });
      if (result.ok) window.location.reload();
      else say("review-state", message(result), true);
    });
  }
  document.getElementById("review-close").addEventListener("click", () => { document.getElementById("env-review").hidden = true; });

  let sharing = null;
  async function share(name) {
    const result = await api("GET", "/api/environments/" + encodeURIComponent(name) + "/access");
    if (!result.ok) { say("env-status", message(result), true); return; }
    sharing = name;
    document.getElementById("share-name").textContent = name;
    document.getElementById("share-users").value = result.data.shared_with.join(", ");
    document.getElementById("env-share").hidden = false;
    document.getElementById("share-users").focus();
  }
  document.getElementById("share-close").addEventListener("click", () => { document.getElementById("env-share").hidden = true; });
  document.getElementById("share-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const users = document.getElementById("share-users").value.split(",").map((u) => u.trim()).filter(Boolean);
    const result = await api("PUT", "/api/environments/" + encodeURIComponent(sharing) + "/sharing", { users: users });
    if (result.ok) window.location.reload();
    else say(document.querySelector("#share-form .status"), message(result), true);
  });

  function row(env) {
    const name = encodeURIComponent(env.name);
    const actions = [el("a", { href: "/config?env=" + name, text: "Open" }), " ",
      el("a", { href: "/api/environments/" + name + "/export", text: "Download", download: env.name + ".zip" })];
    if (env.approval !== "none") {
      actions.push(" ", action("Review", () => review(env.name), { "aria-label": "Review privileged values of " + env.name }));
    }
    if (canEdit) {
      actions.push(" ", action("Duplicate", () => {
        const target = window.prompt("Name of the copy", env.name + "-copy");
        if (target) run(api("POST", "/api/environments/" + name + "/copy", { name: target }));
      }, { "aria-label": "Duplicate " + env.name }));
    }
    if (canEdit && env.can_change) {
      if (!env.is_default) {
        actions.push(" ", action("Share", () => share(env.name), { "aria-label": "Share " + env.name }));
        actions.push(" ", action("Rename", () => {
          const target = window.prompt("New name", env.name);
          if (target && target !== env.name) run(api("PATCH", "/api/environments/" + name, { name: target }));
        }, { "aria-label": "Rename " + env.name }));
      }
      actions.push(" ", action("Delete", () => {
        if (window.confirm("Delete the environment " + env.name + " and every file in its folder?")) {
          run(api("DELETE", "/api/environments/" + name));
        }
      }, { "aria-label": "Delete " + env.name }));
    }
    return el("tr", { dataset: { env: env.name } },
      el("td", {}, el("strong", { text: env.name }), env.is_default ? el("span", { class: "badge", text: " shared" }) : null,
        env.error ? el("div", { class: "help", text: "Cannot be loaded: " + env.error }) : null),
      el("td", { text: env.owner || "—" }),
      el("td", { text: env.datasets_files.join(", ") || "none" }),
      el("td", { text: env.lycoris_config || "none" }),
      el("td", { text: env.is_default ? "—" : (env.merges_default ? "yes" : "no") }),
      el("td", {}, APPROVAL[env.approval]),
      el("td", {}, actions));
  }

  // a folder that is not a usable environment: shown with the reason, so nothing in the configs folder goes missing
  function unloadableRow(folder) {
    return el("tr", { dataset: { env: folder.name }, class: "unloadable" },
      el("td", {}, el("strong", { text: folder.name })),
      el("td", { colspan: "6", text: "Cannot be loaded: " + folder.error }));
  }

  async function load() {
    const result = await api("GET", "/api/environments");
    const body = document.querySelector("#env-table tbody");
    if (!result.ok) { say("env-status", message(result), true); return; }
    body.replaceChildren(...result.data.environments.map(row), ...result.data.unloadable.map(unloadableRow));
    if (!result.data.environments.length && !result.data.unloadable.length) {
      body.append(el("tr", {}, el("td", { colspan: "7", text: "No environment yet: create one below." })));
    }
    const from = document.getElementById("new-from");
    if (from) {
      result.data.environments.forEach((env) => from.append(el("option", { value: "copy:" + env.name, text: "a copy of " + env.name })));
      const examples = await fetchExamples();
      examples.forEach((ex) => from.append(el("option", { value: "example:" + ex.name, text: "example: " + ex.title })));
    }
  }

  async function fetchExamples() {
    const result = await api("GET", "/api/examples");
    return result.ok ? result.data.examples.filter((e) => e.installed && !e.environment) : [];
  }

  const create = document.getElementById("env-create");
  if (create) {
    create.addEventListener("submit", async (event) => {
      event.preventDefault();
      const from = document.getElementById("new-from").value;
      const body = { name: document.getElementById("new-name").value };
      if (from.startsWith("copy:")) body.copy_of = from.slice(5);
      else if (from.startsWith("example:")) body.example = from.slice(8);
      else body.merge_defaults = document.getElementById("new-merge").checked;
      const result = await api("POST", "/api/environments", body);
      if (result.ok) window.location.assign("/config?env=" + encodeURIComponent(result.data.name));
      else say(create.querySelector(".status"), message(result), true);
    });
  }

  const upload = document.getElementById("env-import");
  if (upload) {
    upload.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = document.getElementById("import-file").files[0];
      const name = document.getElementById("import-name").value;
      const response = await fetch("/api/environment-import" + (name ? "?name=" + encodeURIComponent(name) : ""), {
        method: "POST", credentials: "same-origin", body: file,
        headers: { "Content-Type": "application/zip", "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content },
      });
      let data = {};
      try { data = await response.json(); } catch (e) { data = {}; }
      if (response.ok) window.location.reload();
      else say(upload.querySelector(".status"), message({ status: response.status, data: data }), true);
    });
  }

  load();
})();
