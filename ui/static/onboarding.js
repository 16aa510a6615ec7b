// Onboarding: folders, GPUs (stored as accelerate settings in the default environment) and the first environment.
"use strict";

(function () {
  const { api, message, el, say } = window.ST;
  const $ = (id) => document.getElementById(id);
  const form = document.getElementById("onboarding");
  if (!form) return;
  const value = (id) => document.getElementById(id).value.trim();

  async function load() {
    const state = (await api("GET", "/api/onboarding")).data;
    Object.entries(state.folders).forEach(([key, path]) => { document.getElementById(key).value = path; });
    const gpus = state.gpu_settings || {};
    ["num_machines", "machine_rank", "main_process_ip", "main_process_port"].forEach((key) => {
      if (gpus[key] !== undefined) document.getElementById(key).value = gpus[key];
    });
    const choices = document.getElementById("example-choices");
    choices.append(el("label", { class: "choice" }, el("input", { type: "radio", name: "first", value: "blank" }),
      el("strong", { text: "Blank" }), el("p", { class: "muted", text: "An empty environment with this name." })));
    state.examples.filter((e) => e.installed).forEach((example) => {
      choices.append(el("label", { class: "choice" },
        el("input", { type: "radio", name: "first", value: example.name, checked: example.name === "tiny-demo" }),
        el("strong", { text: example.title }), el("p", { class: "muted", text: example.description })));
    });
    // The name field suggests a name that fits the choice until the user types their own.
    const nameInput = document.getElementById("first_name");
    const suggested = (choice) => (choice === "tiny-demo" ? "demo-flux" : "my-lora");
    const checked = choices.querySelector("input[name=first]:checked");
    if (checked) nameInput.value = suggested(checked.value);
    choices.addEventListener("change", (event) => {
      if (event.target.name !== "first") return;
      if (["demo-flux", "my-lora"].includes(nameInput.value)) nameInput.value = suggested(event.target.value);
    });
    if (state.environments.length) {
      say("env-exists", "Environments found: " + state.environments.join(", ") + ". Pick one below only to add another.", false);
      choices.prepend(el("label", { class: "choice" }, el("input", { type: "radio", name: "first", value: "none", checked: true }),
        el("strong", { text: "Keep what is there" })));
    }
    const found = (await api("GET", "/api/system/gpus")).data;
    const list = document.getElementById("gpu-list");
    if (found.gpus && found.gpus.length) {
      list.textContent = found.gpus.length + " GPU(s) found.";
      const selected = gpus.gpu_ids ? String(gpus.gpu_ids).split(",") : [];
      document.getElementById("gpu-choices").replaceChildren(...found.gpus.map((g) => el("label", {},
        el("input", { type: "checkbox", name: "gpu", value: String(g.index), checked: selected.includes(String(g.index)) }),
        " GPU " + g.index + ": " + g.name + " (" + g.memory_gib + " GiB)")));
    } else {
      list.textContent = "No GPU found" + (found.error ? " (" + found.error + ")" : "") + "; training runs on the CPU.";
    }
  }

  function gpuSettings() {
    const mode = form.querySelector("input[name=gpu_mode]:checked").value;
    const settings = { num_machines: Number(value("num_machines")), machine_rank: Number(value("machine_rank")),
      main_process_port: Number(value("main_process_port")), main_process_ip: value("main_process_ip") || null,
      gpu_ids: null, num_processes: 1 };
    if (mode === "subset") {
      const ids = Array.from(form.querySelectorAll("input[name=gpu]:checked")).map((i) => i.value);
      settings.gpu_ids = ids.join(",") || null;
      settings.num_processes = Math.max(ids.length, 1);
    } else if (mode === "count") {
      const count = Number(value("gpu_count"));
      settings.gpu_ids = Array.from({ length: count }, (_, i) => String(i)).join(",");
      settings.num_processes = count;
    } else {
      const boxes = form.querySelectorAll("input[name=gpu]");
      settings.num_processes = Math.max(boxes.length, 1);
    }
    return settings;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("onboarding-finish");
    button.disabled = true;
    say("onboarding-status", "Saving…", false);
    const folders = { configs_dir: value("configs_dir"), datasets_dir: value("datasets_dir"), output_dir: value("output_dir") };
    let result = await api("PATCH", "/api/onboarding", { folders: folders, gpus: gpuSettings() });
    const first = form.querySelector("input[name=first]:checked");
    let created = null;
    if (result.ok && first && first.value !== "none") {
      say("onboarding-status", first.value === "tiny-demo" ? "Building the tiny demo (a minute or two)…" : "Creating…", false);
      const body = first.value === "blank" ? { name: value("first_name"), merge_defaults: true }
        : { name: value("first_name"), example: first.value, demo_steps: Number(value("demo_steps")) };
      result = await api("POST", "/api/environments", body);
      if (result.ok) created = result.data.name;
    }
    if (result.ok) result = await api("PATCH", "/api/onboarding", { done: true });
    button.disabled = false;
    if (!result.ok) { say("onboarding-status", message(result), true); return; }
    if (first && first.value === "tiny-demo" && created) {
      // the demo trains as it is: say so and offer the next step instead of a form to fill in
      form.hidden = true;
      $("ready-name").textContent = created;
      $("onboarding-ready").hidden = false;
      $("ready-title").focus();
      window.ST.refreshEnvironments();  // the header's switcher shows the new environment as the active one
    } else window.location.assign("/wizard");
  });

  const skip = document.getElementById("onboarding-skip");
  if (skip) {
    skip.addEventListener("click", async () => {
      const result = await api("PATCH", "/api/onboarding", { done: true });
      if (result.ok) window.location.assign("/"); else say("onboarding-status", message(result), true);
    });
  }

  load();
})();
