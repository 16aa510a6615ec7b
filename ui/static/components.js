// SimpleTuner UI components shared by every page: the header's menus (grouped navigation, the account menu and the
// phone menu button), toasts for saved / failed, modal dialogs that replace window.prompt and window.confirm,
// tables that become cards on phones, and keyboard access to regions that scroll. Page scripts reach them through window.ST.
"use strict";

(function () {
  const ST = (window.ST = window.ST || {});
  const PENDING = "st-toast";

  // ---- Toasts: a polite live region; failures are alerts and stay until dismissed.
  function toast(text, kind) {
    const region = document.getElementById("result");
    if (!region || !text) return null;
    const type = kind || "success";
    const item = document.createElement("div");
    item.className = "toast toast-" + type;
    if (type === "error") item.setAttribute("role", "alert");
    const body = document.createElement("p");
    body.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => item.remove());
    item.append(body, close);
    region.append(item);
    if (type !== "error") setTimeout(() => item.remove(), 8000);
    return item;
  }

  // A toast to show on the next page (after a reload or a redirect).
  function toastNext(text, kind) {
    try { sessionStorage.setItem(PENDING, JSON.stringify({ text: text, kind: kind || "success" })); } catch (e) { /* private mode */ }
  }

  function showPending() {
    let pending = null;
    try {
      pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
      sessionStorage.removeItem(PENDING);
    } catch (e) { pending = null; }
    if (pending) toast(pending.text, pending.kind);
  }

  // ---- Modal dialogs: resolve to the typed value (ask) or true/false (confirm); Escape and Cancel give null/false.
  function modal(options, build) {
    return new Promise((resolve) => {
      const dialog = document.createElement("dialog");
      dialog.className = "modal";
      const id = "modal-" + Date.now();
      dialog.setAttribute("aria-labelledby", id + "-title");
      const form = document.createElement("form");
      form.method = "dialog";
      form.noValidate = true;
      const title = document.createElement("h2");
      title.id = id + "-title";
      title.textContent = options.title;
      form.append(title);
      const read = build(form, id);
      const actions = document.createElement("div");
      actions.className = "actions modal-actions";
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = options.cancel || "Cancel";
      const ok = document.createElement("button");
      ok.type = "submit";
      ok.className = "primary" + (options.danger ? " danger" : "");
      ok.textContent = options.confirm || "OK";
      actions.append(cancel, ok);
      form.append(actions);
      dialog.append(form);
      let answer = null;
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const value = read();
        if (value === undefined) return;  // the builder showed why
        answer = value;
        dialog.close("ok");
      });
      cancel.addEventListener("click", () => dialog.close("cancel"));
      dialog.addEventListener("close", () => { dialog.remove(); resolve(answer); });
      document.body.append(dialog);
      dialog.showModal();
      const first = dialog.querySelector("input") || ok;
      first.focus();
      if (first.select) first.select();
    });
  }

  function ask(options) {
    return modal(options, (form, id) => {
      const label = document.createElement("label");
      label.htmlFor = id + "-input";
      label.textContent = options.label;
      const input = document.createElement("input");
      input.id = id + "-input";
      input.value = options.value || "";
      input.autocomplete = "off";
      input.setAttribute("aria-describedby", id + "-error");
      const error = document.createElement("p");
      error.id = id + "-error";
      error.className = "field-error";
      error.hidden = true;
      form.append(label, input, error);
      if (options.help) {
        const help = document.createElement("p");
        help.className = "help";
        help.textContent = options.help;
        form.insertBefore(help, error);
      }
      return () => {
        const value = input.value.trim();
        if (!value) {
          error.textContent = "Enter a name first.";
          error.hidden = false;
          input.focus();
          return undefined;
        }
        return value;
      };
    });
  }

  async function confirmDialog(options) {
    const answer = await modal(options, (form) => {
      if (options.message) {
        const text = document.createElement("p");
        text.textContent = options.message;
        form.append(text);
      }
      return () => true;
    });
    return answer === true;
  }

  // ---- Header menus: disclosure buttons (click, Enter or Space), closed by Escape, a click elsewhere or leaving them.
  function setOpen(group, open) {
    group.classList.toggle("open", open);
    const toggle = group.querySelector(".nav-toggle");
    if (toggle) toggle.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function closeMenus(except) {
    document.querySelectorAll(".nav-group.open").forEach((group) => { if (group !== except) setOpen(group, false); });
  }

  function setPhoneMenu(open) {
    const header = document.getElementById("site-header");
    const button = document.getElementById("menu-button");
    if (!header || !button) return;
    header.classList.toggle("menu-open", open);
    button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function setUpHeader() {
    document.querySelectorAll(".nav-group").forEach((group) => {
      const toggle = group.querySelector(".nav-toggle");
      if (!toggle) return;
      toggle.addEventListener("click", () => {
        const open = !group.classList.contains("open");
        closeMenus(group);
        setOpen(group, open);
        if (open) {
          const first = group.querySelector(".nav-menu a, .nav-menu button");
          if (first && toggle.matches(":focus-visible")) first.focus();
        }
      });
      group.addEventListener("focusout", (event) => {
        if (!group.contains(event.relatedTarget) && event.relatedTarget) setOpen(group, false);
      });
    });
    const button = document.getElementById("menu-button");
    if (button) {
      button.addEventListener("click", () => setPhoneMenu(button.getAttribute("aria-expanded") !== "true"));
    }
    document.addEventListener("click", (event) => {
      if (!event.target.closest(".nav-group")) closeMenus(null);
      if (!event.target.closest("#site-header")) setPhoneMenu(false);
    });
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      const group = document.querySelector(".nav-group.open");
      if (group) {
        setOpen(group, false);
        group.querySelector(".nav-toggle").focus();
        return;
      }
      if (button && button.getAttribute("aria-expanded") === "true") {
        setPhoneMenu(false);
        button.focus();
      }
    });
    // The current page: its link and its group are marked.
    const here = window.location.pathname;
    document.querySelectorAll(".site-nav a[href]").forEach((link) => {
      if (link.getAttribute("href") === here) {
        link.setAttribute("aria-current", "page");
        const group = link.closest(".nav-group");
        if (group) group.classList.add("current");
      }
    });
  }

  // ---- A region that scrolls sideways (a wide table on a phone, a log) must be reachable by keyboard.
  const SCROLLERS = "main table, main .scroll, main pre, main .browser ul";
  function focusableScrollers() {
    document.querySelectorAll(SCROLLERS).forEach((node) => {
      const scrolls = node.scrollWidth > node.clientWidth + 1 || node.scrollHeight > node.clientHeight + 1;
      const style = window.getComputedStyle(node);
      const canScroll = /(auto|scroll)/.test(style.overflowX + style.overflowY);
      if (scrolls && canScroll && !node.hasAttribute("tabindex") && !node.querySelector("a, button, input, select, textarea")) {
        node.tabIndex = 0;
        node.dataset.scrollFocus = "";
      } else if ((!scrolls || !canScroll) && node.dataset.scrollFocus !== undefined) {
        node.removeAttribute("tabindex");
        delete node.dataset.scrollFocus;
      }
    });
  }

  // ---- A table marked .stack shows each row as a card on phones: every cell is labelled with its column's header.
  function labelStackedCells() {
    document.querySelectorAll("table.stack").forEach((table) => {
      const headers = Array.from(table.querySelectorAll("tr:first-child > th")).map((th) => th.textContent.trim());
      table.querySelectorAll("tr").forEach((row) => {
        Array.from(row.children).forEach((cell, index) => {
          if (cell.tagName === "TD" && !cell.hasAttribute("data-label") && !cell.hasAttribute("colspan")) {
            cell.dataset.label = headers[index] || "";
          }
        });
      });
    });
  }

  let pendingCheck = null;
  function scheduleScrollerCheck() {
    if (pendingCheck) return;
    pendingCheck = window.requestAnimationFrame(() => { pendingCheck = null; labelStackedCells(); focusableScrollers(); });
  }

  ST.toast = toast;
  ST.toastNext = toastNext;
  ST.ask = ask;
  ST.confirm = confirmDialog;

  document.addEventListener("DOMContentLoaded", () => {
    setUpHeader();
    showPending();
    labelStackedCells();
    focusableScrollers();
    const main = document.getElementById("main");
    if (main) new MutationObserver(scheduleScrollerCheck).observe(main, { childList: true, subtree: true });
    window.addEventListener("resize", scheduleScrollerCheck);
  });
})();
