// Hub login box (wizard publishing step and Publishing tab): stores the user's token through /api/hub/login, which
// checks it with the Hub first. The token is write-only: the page never receives it back.
"use strict";

(function () {
  const { api, message, say } = window.ST;
  const box = document.getElementById("hub-login");
  if (!box) return;
  const $ = (id) => document.getElementById(id);
  const env = box.dataset.env || undefined;
  const query = env ? "?environment=" + encodeURIComponent(env) : "";

  function show(state) {
    const account = state.account;
    let text = account ? "Logged in to " + account.endpoint + " as " + account.name + (account.role ? " (" + account.role + " token)." : ".")
      : "Not logged in to " + state.endpoint + ".";
    if (state.server_token) text += " The server's HF_TOKEN is used for publishing instead.";
    say("hub-state", text, false);
    $("hub-logout").hidden = !account;
  }

  async function load() {
    const result = await api("GET", "/api/hub/login" + query);
    if (result.ok) show(result.data); else say("hub-state", message(result), true);
  }

  async function logIn() {
    const input = $("hub-token");
    const token = input.value.trim();
    if (!token) { say("hub-state", "Paste an access token first.", true); input.focus(); return; }
    say("hub-state", "Checking the token with the Hub…", false);
    const result = await api("PUT", "/api/hub/login", { token: token, environment: env });
    input.value = "";
    if (result.ok) show(result.data); else say("hub-state", "Not logged in: " + message(result), true);
  }

  $("hub-login-save").addEventListener("click", logIn);
  // Enter in the token field logs in instead of submitting the form around the box.
  $("hub-token").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); logIn(); }
  });
  $("hub-logout").addEventListener("click", async () => {
    const result = await api("DELETE", "/api/hub/login");
    if (result.ok) show(result.data); else say("hub-state", message(result), true);
  });
  load();
})();
