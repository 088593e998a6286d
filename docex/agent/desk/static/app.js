/* The clerks' desk: a client of the agent's local API. No framework, no build step, nothing
   from the internet. Every value from the API goes into the page through textContent or an
   attribute, never as HTML. */
(function () {
  "use strict";
  const I18N = window.DESK_I18N;
  const S = { lang: localStorage.getItem("desk.lang") || "zh-CN", csrf: null, tz: "Asia/Shanghai", view: "inbox",
    inbox: [], current: null, units: [], to: [], cc: [], composed: null, notify: true, sound: true, es: null,
    recallReasons: {} };
  const $ = (id) => document.getElementById(id);
  const t = (key) => (I18N[S.lang] && I18N[S.lang][key]) || I18N["zh-CN"][key] || key;

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "cls") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : String(kid));
    return node;
  }
  const clear = (node) => { while (node.firstChild) node.removeChild(node.firstChild); return node; };

  // -- time, in the desk's zone ---------------------------------------------------------------
  function fmt(iso) {
    if (!iso) return "";
    return new Intl.DateTimeFormat(S.lang === "en" ? "en-GB" : "zh-CN", { timeZone: S.tz, year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }
  function countdown(iso) {
    const ms = new Date(iso).getTime() - Date.now();
    const mins = Math.floor(Math.abs(ms) / 60000);
    const text = `${Math.floor(mins / 60)}${t("hours")}${mins % 60}${t("minutes")}`;
    return ms < 0 ? `${t("overdue")} ${text}` : `${t("left")} ${text}`;
  }

  // -- the API --------------------------------------------------------------------------------
  async function api(method, path, body, isForm) {
    const headers = {};
    if (method !== "GET" && S.csrf) headers["X-CSRF-Token"] = S.csrf;
    if (body !== undefined && !isForm) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, { method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : (isForm ? body : JSON.stringify(body)) });
    } catch (e) { throw new Error(t("err.network")); }
    if (res.status === 401 && path !== "/api/login") { showLogin(); throw new Error(t("login.title")); }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const msg = S.lang === "en" ? (data.message_en || data.message) : (data.message_zh || data.message);
      const err = new Error(msg || res.statusText); err.code = data.code; err.detail = data.message; throw err;
    }
    return data;
  }
  function showError(id, err) { const box = $(id); box.textContent = err.message + (err.detail && err.detail !== err.message ? ` (${err.detail})` : ""); box.hidden = false; }

  // -- language -------------------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = S.lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
    $("lang-toggle").textContent = t("lang.other");
  }

  // -- login ----------------------------------------------------------------------------------
  async function boot() {
    applyLang();
    const info = await api("GET", "/api/persons");
    S.tz = info.timezone || S.tz;
    $("unit-name").textContent = info.unit.name;
    S.notify = localStorage.getItem("desk.notify") !== null ? localStorage.getItem("desk.notify") === "1" : info.notify;
    S.sound = localStorage.getItem("desk.sound") !== null ? localStorage.getItem("desk.sound") === "1" : info.sound;
    $("opt-notify").checked = S.notify; $("opt-sound").checked = S.sound;
    const select = clear($("login-person"));
    for (const p of info.persons) select.append(el("option", { value: p.id, text: p.name }));
    if (!info.persons.length) { $("login-error").textContent = t("login.none"); $("login-error").hidden = false; }
    try {
      const me = await fetch("/api/me", { credentials: "same-origin" });
      if (me.ok) { const data = await me.json(); S.csrf = data.csrf; enter(data); return; }
    } catch (e) { /* not logged in */ }
    showLogin();
  }
  function showLogin() {
    $("app").hidden = true; $("nav").hidden = true; $("logout").hidden = true; $("login-view").hidden = false;
    if (S.es) { S.es.close(); S.es = null; }
  }
  async function login(ev) {
    ev.preventDefault();
    $("login-error").hidden = true;
    try {
      const data = await api("POST", "/api/login", { person: $("login-person").value, passphrase: $("login-passphrase").value });
      $("login-passphrase").value = "";
      S.csrf = data.csrf;
      enter(data);
    } catch (err) { showError("login-error", err); }
  }
  function enter(me) {
    $("me").textContent = me.name;
    $("login-view").hidden = true; $("app").hidden = false; $("nav").hidden = false; $("logout").hidden = false;
    $("notify-wrap").hidden = false; $("sound-wrap").hidden = false;
    if (S.notify && window.Notification && Notification.permission === "default") Notification.requestPermission();
    listen();
    route();
  }
  async function logout() { try { await api("POST", "/api/logout"); } finally { S.csrf = null; showLogin(); } }

  // -- views ----------------------------------------------------------------------------------
  function route() {
    const view = (location.hash || "#inbox").slice(1);
    S.view = ["inbox", "send", "sent", "directory"].includes(view) ? view : "inbox";
    for (const name of ["inbox", "send", "sent", "directory"]) {
      $(`view-${name}`).hidden = name !== S.view;
      $(`nav-${name}`).classList.toggle("active", name === S.view);
    }
    refresh();
  }
  function refresh() {
    if ($("app").hidden) return;
    if (S.view === "inbox") loadInbox();
    else if (S.view === "sent") loadSent();
    else if (S.view === "directory") loadDirectory();
    else if (S.view === "send" && !S.units.length) loadUnits();
  }

  // 收文
  function prio(p) { return el("span", { cls: `prio prio-${p}`, text: p }); }
  function stateBadge(s) { return el("span", { cls: `state state-${s}`, "data-state": s, text: t(`state.${s}`) }); }
  function deadlineCell(doc) {
    const cell = el("td", { "data-testid": "deadline" });
    if (doc.state === "delivered") {
      cell.append(el("span", { cls: `countdown${doc.overdue ? " overdue" : ""}`, "data-deadline": doc.deadline, text: countdown(doc.deadline) }));
      if (doc.reminders) cell.append(el("span", { cls: "reminded", "data-testid": "reminded", text: `${t("reminded")}×${doc.reminders}` }));
      cell.append(el("div", { cls: "muted", text: fmt(doc.deadline) }));
    } else if (doc.state === "awaiting_trust") cell.append(el("span", { cls: "muted", title: t("awaiting.hint"), text: `${t("awaiting.until")} ${fmt(doc.wait_until)}` }));
    else cell.append(el("span", { cls: "muted", text: fmt(doc.deadline) }));
    return cell;
  }
  async function loadInbox() {
    const state = $("inbox-filter").value;
    const params = new URLSearchParams({ state, q: $("inbox-q").value });
    S.inbox = await api("GET", `/api/inbox?${params}`);
    if (state === "delivered") {  // still to be dealt with: those awaiting trust too, first
      const waiting = await api("GET", `/api/inbox?${new URLSearchParams({ state: "awaiting_trust", q: $("inbox-q").value })}`);
      S.inbox = waiting.concat(S.inbox);
    }
    const body = clear(document.querySelector("#inbox-table tbody"));
    for (const doc of S.inbox) {
      const row = el("tr", { "data-message-id": doc.message_id, "data-testid": "inbox-row", onclick: () => openDoc(doc.message_id) },
        el("td", {}, prio(doc.priority)), el("td", { text: doc.sender_name }), el("td", { text: doc.doc_number }),
        el("td", { text: doc.title }), el("td", { text: fmt(doc.received_at) }), deadlineCell(doc), el("td", {}, stateBadge(doc.state)));
      if (S.current === doc.message_id) row.classList.add("selected");
      body.append(row);
    }
    $("inbox-empty").hidden = S.inbox.length > 0;
    if (S.current) openDoc(S.current, true);
  }
  function field(dl, label, value) { dl.append(el("dt", { text: label }), el("dd", {}, value)); }
  async function openDoc(id, quiet) {
    let doc;
    try { doc = await api("GET", `/api/inbox/${encodeURIComponent(id)}`); } catch (err) { if (!quiet) alert(err.message); return; }
    S.current = id;
    for (const row of document.querySelectorAll("#inbox-table tbody tr")) row.classList.toggle("selected", row.dataset.messageId === id);
    $("doc-detail").hidden = false; $("doc-detail").dataset.messageId = id; $("doc-detail").dataset.state = doc.state;
    $("detail-title").textContent = doc.title;
    const dl = clear($("detail-fields"));
    field(dl, t("detail.sender"), doc.sender_name);
    field(dl, t("col.docnum"), doc.doc_number);
    field(dl, t("col.priority"), prio(doc.priority));
    field(dl, t("col.to"), doc.to.map((u) => u.name).join("、"));
    field(dl, t("col.cc"), doc.cc.map((u) => u.name).join("、") || "—");
    field(dl, t("col.received"), fmt(doc.received_at));
    const dead = el("span", { id: "detail-deadline" }, fmt(doc.deadline));
    if (doc.state === "delivered") dead.append(" ", el("span", { cls: `countdown${doc.overdue ? " overdue" : ""}`, text: countdown(doc.deadline) }));
    field(dl, t("col.deadline"), dead);
    field(dl, t("detail.seal"), el("span", { id: "detail-seal", cls: `seal-${doc.seal}`, text: t(`seal.${doc.seal}`) }));
    field(dl, t("col.state"), stateBadge(doc.state));
    if (doc.person) field(dl, t("detail.person"), doc.person);
    if (doc.reason) field(dl, t("detail.reason"), doc.reason);
    if (doc.recall) field(dl, t("detail.recall"), `${doc.recall.reason} (${fmt(doc.recall.at)})`);
    if (doc.state === "awaiting_trust") field(dl, t("awaiting.until"), el("span", { id: "detail-awaiting", text: `${fmt(doc.wait_until)} (${t("awaiting.hint")})` }));
    field(dl, t("detail.id"), doc.message_id);
    const files = clear($("detail-files"));
    for (const f of doc.files) {
      const base = `/api/inbox/${encodeURIComponent(id)}/files/${encodeURIComponent(f.name)}`;
      const item = el("li", { "data-file": f.name }, el("span", { text: `${f.name} (${Math.ceil(f.size / 1024)} KB) ` }));
      if (doc.state !== "recalled") {
        if (f.name.toLowerCase().endsWith(".pdf")) item.append(el("a", { href: `${base}?inline=1`, target: "_blank", rel: "noopener", text: t("act.open") }), " ");
        item.append(el("a", { href: base, download: f.name, text: t("act.download") }));
      }
      files.append(item);
    }
    const open = doc.state === "delivered";
    $("btn-sign-for").disabled = !open; $("btn-return").disabled = !open; $("return-reason").disabled = !open;
    $("btn-slip").hidden = !(doc.state === "signed_for" || doc.state === "returned");
    $("btn-slip").href = `/api/inbox/${encodeURIComponent(id)}/receipt.pdf`;
    if (!quiet) $("detail-error").hidden = true;
  }
  async function act(kind) {
    const id = S.current;
    $("detail-error").hidden = true;
    try {
      if (kind === "sign") await api("POST", `/api/inbox/${encodeURIComponent(id)}/sign-for`);
      else await api("POST", `/api/inbox/${encodeURIComponent(id)}/return`, { reason: $("return-reason").value.trim() });
      $("return-reason").value = "";
      await loadInbox();
      await openDoc(id);
    } catch (err) { showError("detail-error", err); }
  }

  // 发文
  async function loadUnits() {
    S.units = await api("GET", "/api/directory");
    const groups = [...new Set(S.units.filter((u) => !u.self).map((u) => u.group))];
    const sel = $("recipient-group");
    while (sel.options.length > 1) sel.remove(1);
    for (const g of groups) sel.append(el("option", { value: g, text: g }));
    renderPicker();
  }
  function pickerMatches() {
    const q = $("recipient-search").value.trim().toLowerCase();
    const g = $("recipient-group").value;
    return S.units.filter((u) => !u.self && u.state === "enabled" && (!g || u.group === g)
      && (!q || u.name.toLowerCase().includes(q) || u.address.toLowerCase().includes(q)));
  }
  function renderPicker() {
    const list = clear($("recipient-list"));
    for (const u of pickerMatches().slice(0, 300)) {
      list.append(el("li", { "data-address": u.address, "data-testid": "recipient-option" },
        el("span", { cls: "name", text: u.name }), el("span", { cls: "group", text: u.group }),
        el("button", { type: "button", cls: "add-to", text: t("send.add_to"), onclick: () => choose(u, "to") }),
        el("button", { type: "button", cls: "add-cc", text: t("send.add_cc"), onclick: () => choose(u, "cc") })));
    }
  }
  function choose(u, where) {
    S.to = S.to.filter((x) => x.address !== u.address); S.cc = S.cc.filter((x) => x.address !== u.address);
    S[where].push(u); renderChosen();
  }
  function renderChosen() {
    for (const where of ["to", "cc"]) {
      const box = clear($(`send-${where}`));
      for (const u of S[where]) box.append(el("span", { cls: "chip", "data-address": u.address }, u.name,
        el("button", { type: "button", title: "×", text: "×", onclick: () => { S[where] = S[where].filter((x) => x !== u); renderChosen(); } })));
    }
  }
  function groupTo() { for (const u of pickerMatches()) if (!S.to.some((x) => x.address === u.address)) choose(u, "to"); }
  function classificationChanged() { $("classified-warning").hidden = !$("send-classification").value; }
  async function composeBody() {
    $("send-error").hidden = true;
    try {
      const res = await fetch("/api/compose", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": S.csrf },
        body: JSON.stringify({ title: $("send-title").value, doc_number: $("send-docnum").value, priority: $("send-priority").value === "平急" ? "" : $("send-priority").value,
          signer: $("compose-signer").value, main_recipients: S.to.map((u) => u.name), cc: S.cc.map((u) => u.name), body: $("compose-body").value, seal: $("compose-seal").checked }) });
      if (!res.ok) { const d = await res.json(); throw Object.assign(new Error(d.message_zh || d.message), { detail: d.message }); }
      S.composed = await res.blob();
      $("compose-state").textContent = t($("compose-seal").checked ? "send.composed_sealed" : "send.composed");
      $("compose-state").dataset.state = $("compose-seal").checked ? "sealed" : "composed";
      window.open(URL.createObjectURL(S.composed), "_blank", "noopener");
    } catch (err) { showError("send-error", err); }
  }
  function sendFiles() { return [...$("send-files").files]; }
  function preview() {
    $("send-error").hidden = true; $("send-result").hidden = true;
    const problem = $("send-classification").value ? "send.classified" : !$("send-title").value.trim() ? "send.need_title"
      : !S.to.length ? "send.need_to" : (!sendFiles().length && !S.composed) ? "send.need_files" : null;
    if (problem) { showError("send-error", new Error(t(problem))); return; }
    const dl = clear($("preview-fields"));
    field(dl, t("col.title"), $("send-title").value);
    field(dl, t("col.docnum"), $("send-docnum").value);
    field(dl, t("col.priority"), prio($("send-priority").value));
    field(dl, t("col.to"), el("span", { id: "preview-to", text: S.to.map((u) => u.name).join("、") }));
    field(dl, t("col.cc"), S.cc.map((u) => u.name).join("、") || "—");
    const names = [...(S.composed ? ["正文.pdf"] : []), ...sendFiles().map((f) => f.name)];
    field(dl, t("send.files"), el("span", { id: "preview-files", text: names.join("；") }));
    $("send-preview").hidden = false;
  }
  async function send() {
    $("send-error").hidden = true;
    const form = new FormData();
    form.append("meta", JSON.stringify({ to: S.to.map((u) => u.address), cc: S.cc.map((u) => u.address),
      title: $("send-title").value.trim(), doc_number: $("send-docnum").value.trim(), priority: $("send-priority").value,
      classification: $("send-classification").value }));
    if (S.composed) form.append("files", S.composed, "正文.pdf");
    for (const f of sendFiles()) form.append("files", f, f.name);
    $("btn-send").disabled = true;
    try {
      const res = await api("POST", "/api/send", form, true);
      $("send-result").textContent = t("send.done") + res.message_id; $("send-result").hidden = false;
      $("send-result").dataset.messageId = res.message_id;
      $("send-preview").hidden = true; $("send-form").reset(); S.to = []; S.cc = []; S.composed = null;
      $("compose-state").textContent = ""; delete $("compose-state").dataset.state; renderChosen(); classificationChanged();
    } catch (err) { showError("send-error", err); } finally { $("btn-send").disabled = false; }
  }

  // 已发
  function times(r) {
    const parts = [];
    if (r.delivered_at) parts.push(`${t("state.delivered").replace("待签收", "送达")} ${fmt(r.delivered_at)}`);
    if (r.signed_for_at) parts.push(`${t("state.signed_for")} ${fmt(r.signed_for_at)}`);
    if (r.returned_at) parts.push(`${t("state.returned")} ${fmt(r.returned_at)}`);
    if (!parts.length && r.at) parts.push(fmt(r.at));
    return parts.join("；");
  }
  async function loadSent() {
    const docs = await api("GET", "/api/sent");
    // The list is drawn afresh on every change: a recall reason being typed keeps its text and focus.
    const typing = document.activeElement && document.activeElement.classList.contains("recall-reason")
      ? document.activeElement.closest(".sent-doc").dataset.messageId : null;
    const box = clear($("sent-list"));
    for (const d of docs) {
      const table = el("table", { cls: "list" }, el("thead", {}, el("tr", {}, ...["col.recipient", "col.state", "col.times",
        "col.signed_by", "col.reason", "col.reminders"].map((k) => el("th", { text: t(k) })))));
      const tbody = el("tbody");
      for (const r of d.recipients) {
        tbody.append(el("tr", { "data-address": r.address, "data-testid": "sent-recipient" },
          el("td", { text: r.name }), el("td", { "data-testid": "recipient-state" }, stateBadge(r.state)),
          el("td", { text: times(r) }), el("td", { text: r.signed_by || (r.signed_for_at ? t("sent.unit_seal") : "") }), el("td", { text: r.return_reason || (r.state === "rejected" ? r.reason : "") }),
          el("td", { text: r.reminders ? String(r.reminders) : "" })));
      }
      table.append(tbody);
      const doc = el("div", { cls: "sent-doc", "data-message-id": d.message_id, "data-testid": "sent-doc" },
        el("div", { cls: "head" }, prio(d.priority), el("span", { cls: "title", text: d.title }), el("span", { text: d.doc_number }),
          el("span", { cls: "muted", text: fmt(d.created_at) }), stateBadge(d.state)), table);
      if (d.recall) {
        doc.append(el("div", { cls: "muted", text: `${t("sent.recalled")}${d.recall.reason} ${d.recall.person} ${fmt(d.recall.at)}` }));
        const kept = d.recipients.filter((r) => r.state === "signed_for").map((r) => r.name);
        if (kept.length) doc.append(el("div", { cls: "muted", "data-testid": "recall-kept", text: t("sent.kept") + kept.join("、") }));
      }
      if (d.recallable) {
        const input = el("input", { type: "text", cls: "recall-reason", maxlength: "500", placeholder: t("act.recall_reason"),
          oninput: (e) => { S.recallReasons[d.message_id] = e.target.value; } });
        input.value = S.recallReasons[d.message_id] || "";
        const err = el("span", { cls: "error", hidden: "hidden" });
        doc.append(el("div", { cls: "recall-box" }, input, el("button", { type: "button", cls: "btn-recall", text: t("act.recall"),
          onclick: async () => {
            try {
              await api("POST", `/api/sent/${encodeURIComponent(d.message_id)}/recall`, { reason: input.value.trim() });
              delete S.recallReasons[d.message_id]; loadSent();
            } catch (e) { err.textContent = e.message; err.hidden = false; }
          } }), err));
      }
      box.append(doc);
      if (typing === d.message_id) {
        const input = doc.querySelector(".recall-reason");
        if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
      }
    }
    $("sent-empty").hidden = docs.length > 0;
  }

  // 通讯录
  async function loadDirectory() {
    const units = await api("GET", `/api/directory?q=${encodeURIComponent($("dir-search").value)}`);
    const body = clear(document.querySelector("#dir-table tbody"));
    for (const u of units) body.append(el("tr", { "data-address": u.address, "data-testid": "directory-row" },
      el("td", { text: u.name }), el("td", { text: u.group }), el("td", { text: u.address }), el("td", { text: t(`unit.${u.state}`) })));
  }

  // -- new documents announce themselves -----------------------------------------------------------
  function beep(urgent) {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const notes = urgent ? [880, 660, 880, 660] : [660, 880];
      notes.forEach((f, i) => {
        const osc = ctx.createOscillator(); const gain = ctx.createGain();
        osc.frequency.value = f; gain.gain.value = 0.15; osc.connect(gain); gain.connect(ctx.destination);
        osc.start(ctx.currentTime + i * 0.18); osc.stop(ctx.currentTime + i * 0.18 + 0.15);
      });
    } catch (e) { /* no audio */ }
  }
  function toast(text) {
    const box = $("toast"); box.textContent = text; box.hidden = false;
    clearTimeout(toast.timer); toast.timer = setTimeout(() => { box.hidden = true; }, 8000);
  }
  function announce(doc) {
    const urgent = doc.priority === "特急" || doc.priority === "加急";
    const head = t(urgent ? "new.urgent" : "new.document");
    const text = `${head}：${doc.sender_name} ${doc.doc_number}《${doc.title}》`;
    toast(text);
    if (S.sound) beep(urgent);
    if (S.notify && window.Notification && Notification.permission === "granted") {
      try { new Notification(head, { body: `${doc.sender_name} ${doc.doc_number}《${doc.title}》`, tag: doc.message_id, requireInteraction: urgent }); } catch (e) { /* ignore */ }
    }
  }
  function listen() {
    if (S.es || !window.EventSource) return;
    S.es = new EventSource("/api/events");
    S.es.addEventListener("document", (ev) => { try { announce(JSON.parse(ev.data)); } catch (e) { /* ignore */ } });
    S.es.addEventListener("change", () => refresh());
    S.es.onerror = () => { /* EventSource reconnects by itself */ };
  }
  setInterval(() => {
    for (const node of document.querySelectorAll(".countdown")) {
      const iso = node.dataset.deadline; if (iso) node.textContent = countdown(iso);
    }
  }, 30000);

  // -- wiring ---------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("login-passphrase").addEventListener("input", () => { $("login-error").hidden = true; });
    $("logout").addEventListener("click", logout);
    $("lang-toggle").addEventListener("click", () => { S.lang = S.lang === "en" ? "zh-CN" : "en"; localStorage.setItem("desk.lang", S.lang); applyLang(); refresh(); if (S.current && S.view === "inbox") openDoc(S.current, true); });
    $("opt-notify").addEventListener("change", (e) => { S.notify = e.target.checked; localStorage.setItem("desk.notify", S.notify ? "1" : "0"); if (S.notify && window.Notification) Notification.requestPermission(); });
    $("opt-sound").addEventListener("change", (e) => { S.sound = e.target.checked; localStorage.setItem("desk.sound", S.sound ? "1" : "0"); });
    window.addEventListener("hashchange", route);
    $("inbox-filter").addEventListener("change", loadInbox);
    $("inbox-q").addEventListener("input", loadInbox);
    $("btn-sign-for").addEventListener("click", () => act("sign"));
    $("btn-return").addEventListener("click", () => act("return"));
    $("recipient-search").addEventListener("input", renderPicker);
    $("recipient-group").addEventListener("change", renderPicker);
    $("btn-group-to").addEventListener("click", groupTo);
    $("send-classification").addEventListener("change", classificationChanged);
    $("btn-compose").addEventListener("click", composeBody);
    $("btn-preview").addEventListener("click", preview);
    $("btn-send").addEventListener("click", send);
    $("btn-send-cancel").addEventListener("click", () => { $("send-preview").hidden = true; });
    $("send-form").addEventListener("submit", (e) => e.preventDefault());
    $("dir-search").addEventListener("input", loadDirectory);
    boot().catch((err) => { document.body.append(el("p", { cls: "error", text: err.message })); });
  });
})();
