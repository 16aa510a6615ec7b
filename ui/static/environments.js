// Environments: list, create, duplicate, rename, download, upload and delete environments; review and approve
// their privileged values; share them.
"use strict";

(function () {
  const { api, message, el, say, toast, toastNext, ask, confirm } = window.ST;
  const canEdit = document.getElementById("can-edit").dataset.value === "yes";

  function action(label, handler, extra) {
    const button = el("button", Object.assign({ type: "button", text: label, class: "small" }, extra || {}));
    button.addEventListener("click", handler);
    return button;
  }

  // Runs a change; on success the page reloads and a toast says what happened, on failure a toast says why.
  async function run(promise, done) {
    const result = await promise;
    if (!result.ok) toast(message(result), "error");
    else {
      toastNext(done);
      window.location.reload();
    }
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
    document.getElementById("env-review").showModal();
  }

  const approve = document.getElementById("review-approve");
  if (approve) {
    approve.addEventListener("click", async () => {
      const result = await api("POST", "/api/environments/" + encodeURIComponent(reviewed.environment) + "/approve",
        { digest: reviewed.digest });
      if (result.ok) {
        toastNext("Approved the privileged values of " + reviewed.environment + ".");
        window.location.reload();
      } else say("review-state", message(result), true);
    });
  }
  document.getElementById("review-close").addEventListener("click", () => document.getElementById("env-review").close());

  let sharing = null;
  async function share(name) {
    const result = await api("GET", "/api/environments/" + encodeURIComponent(name) + "/access");
    if (!result.ok) { say("env-status", message(result), true); return; }
    sharing = name;
    document.getElementById("share-name").textContent = name;
    document.getElementById("share-users").value = result.data.shared_with.join(", ");
    document.getElementById("env-share").showModal();
    document.getElementById("share-users").focus();
  }
  document.getElementById("share-close").addEventListener("click", () => document.getElementById("env-share").close());
  document.getElementById("share-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const users = document.getElementById("share-users").value.split(",").map((u) => u.trim()).filter(Boolean);
    const result = await api("PUT", "/api/environments/" + encodeURIComponent(sharing) + "/sharing", { users: users });
    if (result.ok) {
      toastNext("Sharing of " + sharing + " saved.");
      window.location.reload();
    } else say(document.querySelector("#share-form .status"), message(result), true);
  });

  function row(env) {
    const name = encodeURIComponent(env.name);
    const actions = [el("a", { href: "/config?env=" + name, text: "Open" }), " · ",
      el("a", { href: "/api/environments/" + name + "/export", text: "Download", download: env.name + ".zip" })];
    if (env.approval !== "none") {
      actions.push(" ", action("Review", () => review(env.name), { "aria-label": "Review privileged values of " + env.name }));
    }
    if (canEdit) {
      actions.push(" ", action("Duplicate", async () => {
        const target = await ask({ title: "Duplicate " + env.name, label: "Name of the copy", value: env.name + "-copy",
          help: "Letters, digits, '-', '_', '.' and '+'.", confirm: "Duplicate" });
        if (target) run(api("POST", "/api/environments/" + name + "/copy", { name: target }), "Copied " + env.name + " to " + target + ".");
      }, { "aria-label": "Duplicate " + env.name }));
    }
    if (canEdit && env.can_change) {
      if (!env.is_default) {
        actions.push(" ", action("Share", () => share(env.name), { "aria-label": "Share " + env.name }));
        actions.push(" ", action("Rename", async () => {
          const target = await ask({ title: "Rename " + env.name, label: "New name", value: env.name,
            help: "Letters, digits, '-', '_', '.' and '+'.", confirm: "Rename" });
          if (target && target !== env.name) {
            run(api("PATCH", "/api/environments/" + name, { name: target }), "Renamed " + env.name + " to " + target + ".");
          }
        }, { "aria-label": "Rename " + env.name }));
      }
      actions.push(" ", action("Delete", async () => {
        const sure = await confirm({ title: "Delete " + env.name + "?", confirm: "Delete", danger: true,
          message: "The environment " + env.name + " and every file in its folder are deleted. This cannot be undone." });
        if (sure) run(api("DELETE", "/api/environments/" + name), "Deleted " + env.name + ".");
      }, { "aria-label": "Delete " + env.name, class: "small danger" }));
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
      body.append(el("tr", {}, el("td", { colspan: "7", class: "empty-cell" },
        el("strong", { text: "No environment yet." }),
        canEdit ? " Create one below: start from an example, a copy or a blank configuration." :
          " Ask a researcher or an admin to create one.")));
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
      if (result.ok) {
        toastNext("Created " + result.data.name + ".");
        window.location.assign("/config?env=" + encodeURIComponent(result.data.name));
      }
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
      if (response.ok) {
        toastNext("Uploaded " + (data.name || "the environment") + ".");
        window.location.reload();
      }
      else say(upload.querySelector(".status"), message({ status: response.status, data: data }), true);
    });
  }

  load();
})();
