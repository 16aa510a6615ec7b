// Approval state of privileged options on the Configuration page, as the server reports it from the approval records:
// beside each privileged option, whether its value is approved, waits for an admin's approval, or what a change would
// lead to; above the tabs, the environments whose privileged values wait; and for admins, approving them here.
"use strict";

(function () {
  const ST = (window.ST = window.ST || {});

  const CHANGE = {
    approved: "Privileged: a change you save is approved as you write it.",
    waiting: "Privileged: a change you save waits for approval, like this environment's other privileged values.",
    refused: "Privileged: only users allowed to set privileged values (config.trusted) can change it; ask an admin.",
  };

  function environmentOf(approvals, name) {
    return approvals.environments.find((e) => e.name === name) || {};
  }

  // Asks to approve exactly the privileged values of ``name`` as they are now (shown in the dialog), then approves
  // them; ``done`` runs after an approval.
  async function approve(name, done) {
    const { api, message, toast } = ST;
    const access = await api("GET", "/api/environments/" + encodeURIComponent(name) + "/access");
    if (!access.ok) { toast(message(access), "error"); return; }
    const lines = [];
    Object.entries(access.data.privileged).forEach(([part, values]) => Object.entries(values).forEach(([key, value]) =>
      lines.push(part + ": " + key + " = " + (typeof value === "string" ? value : JSON.stringify(value)))));
    const sure = await ST.confirm({ title: "Approve the privileged values of " + name + "?", confirm: "Approve these values",
      message: "Runs of " + name + " may then use exactly these values: " + lines.join("; ") + "." });
    if (!sure) return;
    const result = await api("POST", "/api/environments/" + encodeURIComponent(name) + "/approve", { digest: access.data.digest });
    if (result.ok) {
      toast("Approved the privileged values of " + name + ".");
      done();
    } else toast(message(result), "error");
  }

  // The line under a privileged option: its state, and for an admin a button that approves it.
  function line(opt, approvals, done) {
    const { el } = ST;
    const item = approvals.options[opt.key] || { state: "unset", environment: null };
    const node = el("span", { class: "approval", id: "appr-" + opt.key, dataset: { state: item.state } });
    if (item.state === "unset") {
      node.append(CHANGE[approvals.on_change]);
      return node;
    }
    const env = environmentOf(approvals, item.environment);
    const where = item.environment !== approvals.environments[approvals.environments.length - 1].name
      ? " (set in " + item.environment + ")" : "";
    if (item.state === "approved") {
      node.append(el("span", { class: "badge good", text: "Approved" }),
        " " + (env.approved_by ? "by " + env.approved_by : "") + where + ".");
    } else {
      node.append(el("span", { class: "badge warn", text: "Waiting for approval" }),
        " Runs are refused until an admin approves the privileged values" + where + ".");
      if (approvals.can_approve) {
        const button = el("button", { type: "button", class: "small", text: "Review and approve",
          "aria-label": "Review and approve the privileged values of " + item.environment });
        button.addEventListener("click", () => approve(item.environment, done));
        node.append(" ", button);
      } else node.append(" ", el("a", { href: "/environments", text: "See the Environments page" }));
    }
    if (approvals.on_change === "refused") node.append(" Only users allowed to set privileged values can change it.");
    return node;
  }

  // Called when the value of a privileged option is edited: says what saving the change leads to.
  function changed(opt, approvals) {
    const node = document.getElementById("appr-" + opt.key);
    if (node) node.replaceChildren(ST.el("span", { class: "badge", text: "Changed" }), " " + CHANGE[approvals.on_change]);
  }

  // The box above the tabs naming each environment whose privileged values wait (dataset values included).
  function summary(box, approvals, done) {
    const { el } = ST;
    const waiting = approvals.environments.filter((e) => e.state === "waiting");
    box.hidden = !waiting.length;
    box.replaceChildren(...waiting.map((env) => {
      const parts = [el("strong", { text: "Waiting for approval: " }),
        "the privileged values of " + env.name + " (" + env.keys.join(", ") + "). Runs are refused until an admin approves them."];
      if (approvals.can_approve) {
        const button = el("button", { type: "button", class: "small", text: "Review and approve",
          "aria-label": "Review and approve the privileged values of " + env.name + " (summary)" });
        button.addEventListener("click", () => approve(env.name, done));
        parts.push(" ", button);
      }
      return el("p", {}, parts);
    }));
  }

  ST.configApprovals = { line: line, changed: changed, summary: summary };
})();
