// The information centre's delivery dashboard. Plain JS, no build step, no CDN (the
// county network is isolated). Reads only the hub's read API (same origin, session
// cookie); every value from the API goes into the page as text, never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const STATES = ["accepted", "routed", "delivered", "signed_for", "returned",
    "rejected", "expired", "paper_route", "recalled", "dead_letter"];
  const REACHED = ["delivered", "signed_for", "returned"]; // the unit has it
  const WAITING = ["accepted", "routed", "delivered"]; // not finished yet
  const I18N = window.DOCEX_I18N || { "zh-CN": {} };
  const ALIASES = window.DOCEX_ALIASES || {};
  const DEAD_PAGE = 50; // dead letters per page

  let lang = localStorage.getItem("docex.lang") === "en" ? "en" : "zh-CN";
  let route = parseRoute();
  let shown = null; // {route, data}: what is on screen, re-rendered on a language switch
  let seq = 0; // answers to an older request are dropped
  let timer = null;

  class AuthError extends Error {}
  class HttpError extends Error {
    constructor(status) { super("HTTP " + status); this.status = status; }
  }

  // ---------- text ----------
  function t(key, vars) {
    let s = (I18N[lang] || {})[key];
    if (s === undefined) s = I18N["zh-CN"][key];
    if (s === undefined) s = key;
    if (vars) for (const k of Object.keys(vars)) s = s.replace("{" + k + "}", String(vars[k]));
    return s;
  }
  function label(prefix, value) {
    if (value === null || value === undefined || value === "") return "–";
    const v = ALIASES[value] || value;
    const key = prefix + "." + v;
    const s = (I18N[lang] || {})[key] ?? I18N["zh-CN"][key];
    return s === undefined ? String(value) : s;
  }
  function normState(state) { return ALIASES[state] || state; }

  function pad(n) { return String(n).padStart(2, "0"); }
  function parseTime(iso) {
    if (!iso) return null;
    const d = new Date(iso);
    return isNaN(d.getTime()) ? null : d;
  }
  // The API writes local times with their offset (2026-12-01T09:30:00+08:00): show that wall
  // time, the hub's zone (shown in the top bar), whatever zone the browser is in.
  const WALL = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)/;
  function fmtTime(iso) {
    const m = typeof iso === "string" ? WALL.exec(iso) : null;
    if (m) return m[1] + " " + m[2];
    const d = parseTime(iso);
    if (!d) return iso ? String(iso) : "–";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function relTime(iso) {
    const d = parseTime(iso);
    if (!d) return t("unit.never");
    const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
    if (s < 60) return t("time.just_now");
    if (s < 3600) return t("time.minutes_ago", { n: Math.floor(s / 60) });
    if (s < 86400) return t("time.hours_ago", { n: Math.floor(s / 3600) });
    return t("time.days_ago", { n: Math.floor(s / 86400) });
  }

  // ---------- DOM ----------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);
  function stateBadge(state, testid) {
    const s = normState(state);
    return el("span", { class: "state state-" + s, "data-state": s, "data-testid": testid },
      label("state", s));
  }
  function num(v) { return v === null || v === undefined ? "–" : String(v); }

  function applyI18n() {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    document.title = t("app.title");
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.getAttribute("data-i18n"));
    }
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.setAttribute("placeholder", t(node.getAttribute("data-i18n-placeholder")));
    }
    const select = $("search-state");
    const current = select.value;
    select.replaceChildren(el("option", { value: "", text: t("search.any") }),
      ...STATES.map((s) => el("option", { value: s, text: label("state", s) })));
    select.value = current;
  }

  // ---------- routing ----------
  // #overview | #documents?q=..&sender=.. | #document/<message id> | #units
  // | #dead-letters?page=N&all=1
  function parseRoute() {
    const [rawPath, query] = splitOnce(location.hash.replace(/^#\/?/, ""), "?");
    let path = rawPath;
    try { path = decodeURIComponent(rawPath); } catch (e) { /* keep it as typed */ }
    const params = new URLSearchParams(query || "");
    if (path.startsWith("document/")) {
      return { view: "document", id: path.slice("document/".length), params };
    }
    if (path === "documents" || path === "units" || path === "dead-letters") return { view: path, params };
    return { view: "overview", params };
  }
  function splitOnce(s, sep) {
    const i = s.indexOf(sep);
    return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + 1)];
  }
  function go(hash) { if (location.hash !== hash) location.hash = hash; else refresh(); }
  function documentHash(id) { return "#document/" + encodeURIComponent(id); }

  // ---------- API ----------
  async function api(path) {
    const response = await fetch(path, {
      credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) throw new AuthError();
    if (!response.ok) throw new HttpError(response.status);
    return response.json();
  }
  const SEARCH_FIELDS = ["q", "sender", "date_from", "date_to", "state"];
  const SEARCH_FLAGS = ["pending", "overdue"]; // checkboxes: ?overdue=1
  function load(r) {
    switch (r.view) {
      case "document":
        return api("api/documents/" + encodeURIComponent(r.id)).then((doc) => ({ doc }));
      case "documents": {
        const p = new URLSearchParams();
        for (const f of SEARCH_FIELDS) if (r.params.get(f)) p.set(f, r.params.get(f));
        for (const f of SEARCH_FLAGS) if (r.params.get(f)) p.set(f, "true");
        p.set("limit", "200");
        return api("api/documents?" + p.toString()).then((list) => ({ list }));
      }
      case "units":
        return api("api/units").then((units) => ({ units }));
      case "dead-letters": {
        const p = new URLSearchParams();
        p.set("offset", String((deadPage(r) - 1) * DEAD_PAGE));
        p.set("limit", String(DEAD_PAGE));
        if (r.params.get("all")) p.set("all", "true");
        return api("api/dead-letters?" + p.toString()).then((dead) => ({ dead }));
      }
      default:
        return Promise.all([api("api/overview"), api("api/documents?limit=10")])
          .then(([overview, recent]) => ({ overview, recent }));
    }
  }

  async function refresh() {
    const mine = ++seq;
    const r = route;
    try {
      const data = await load(r);
      if (mine !== seq) return;
      shown = { route: r, data };
      showApp();
      render();
      hideError();
      $("last-updated").textContent = t("refresh.updated") + " " +
        new Date().toLocaleTimeString(lang === "en" ? "en-GB" : "zh-CN", { hour12: false });
    } catch (err) {
      if (mine !== seq) return;
      if (err instanceof AuthError) { showLogin(shown !== null); return; }
      if (err instanceof HttpError && err.status === 404 && r.view === "document") {
        showApp(); showError(t("error.notfound")); return;
      }
      showError(t("error.load"));
    }
  }

  // ---------- screens ----------
  function showLogin(expired) {
    stopTimer();
    $("app").hidden = true;
    $("nav").hidden = true;
    $("auto-refresh-label").hidden = true;
    $("logout-form").hidden = true;
    $("login-view").hidden = false;
    const query = new URLSearchParams(location.search);
    const failed = query.has("login_failed") || query.get("login") === "failed";
    const locked = query.has("login_locked");  // too many failures: the hub says to wait
    const msg = $("login-error");
    msg.hidden = !(failed || locked || expired);
    msg.textContent = t(locked ? "login.locked" : failed ? "login.failed" : "login.expired");
    $("login-username").focus();
  }
  function showApp() {
    $("login-view").hidden = true;
    $("app").hidden = false;
    $("nav").hidden = false;
    $("auto-refresh-label").hidden = false;
    $("logout-form").hidden = false;
    for (const view of ["overview", "documents", "document", "units", "dead-letters"]) {
      $(view + "-view").hidden = view !== route.view;
    }
    for (const link of document.querySelectorAll("#nav a")) {
      const target = link.id.replace("nav-", "");
      link.classList.toggle("active", target === route.view ||
        (target === "documents" && route.view === "document"));
    }
    startTimer();
  }
  function showError(text) { const b = $("error-banner"); b.textContent = text; b.hidden = false; }
  function hideError() { $("error-banner").hidden = true; }

  function render() {
    if (!shown || shown.route !== route) return;
    const d = shown.data;
    if (route.view === "overview") renderOverview(d.overview, d.recent);
    else if (route.view === "documents") renderDocuments(d.list);
    else if (route.view === "document") renderDocument(d.doc);
    else if (route.view === "units") renderUnits(d.units);
    else if (route.view === "dead-letters") renderDeadLetters(d.dead);
  }

  function progress(states, total) {
    states = states || {};
    const count = (names) => names.reduce((n, s) => n + (states[s] || 0), 0);
    const reached = count(REACHED);
    const signed = count(["signed_for"]);
    const pct = total ? Math.round((100 * signed) / total) : 0;
    return el("div", { class: "progress", "data-testid": "document-progress",
      "data-delivered": reached, "data-signed": signed, "data-total": total },
      el("div", { class: "bar" }, el("div", { class: "fill", style: "width:" + pct + "%" })),
      el("span", { class: "nums" }, t("progress.text", { d: reached, s: signed, n: total })));
  }

  function documentRow(item, compact) {
    const cells = [
      el("td", { "data-testid": "document-number" }, item.doc_number || "–"),
      el("td", { class: "title", "data-testid": "document-row-title" },
        el("a", { href: documentHash(item.message_id) }, item.title || "–")),
      el("td", { title: item.sender }, item.sender_name || item.sender),
    ];
    const flags = (item.flags || []).map((f) =>
      el("span", { class: "tag flag-" + f, "data-testid": "document-flag", "data-flag": f }, t("flag." + f)));
    if (flags.length) cells[1].append(...flags);
    if (!compact) {
      cells.push(el("td", { class: "priority priority-" + (ALIASES[item.priority] || item.priority) },
        label("priority", item.priority)));
      cells.push(el("td", { class: "time" }, fmtTime(item.created_at)));
    }
    cells.push(el("td", {}, progress(item.states, item.recipients_total)));
    if (!compact) {
      cells.push(el("td", { class: "chips" }, STATES.filter((s) => (item.states || {})[s])
        .map((s) => el("span", { class: "chip state-" + s, "data-state": s },
          label("state", s) + " " + item.states[s]))));
    }
    return el("tr", {
      "data-testid": "document-row", "data-message-id": item.message_id, class: "clickable",
      onclick: (ev) => { if (ev.target.tagName !== "A") go(documentHash(item.message_id)); },
    }, cells);
  }

  function renderOverview(o, recent) {
    $("overview-documents-today").textContent = num(o.documents_today);
    $("overview-pending-sign-for").textContent = num(o.pending_sign_for);
    $("overview-overdue").textContent = num(o.overdue);
    $("overview-overdue").closest(".card").classList.toggle("alert", (o.overdue || 0) > 0);
    $("overview-units-offline").textContent = num(o.units_offline);
    $("overview-units-total").textContent = t("overview.units_of", { n: num(o.units_total) });
    $("overview-dead-letters").textContent = num(o.dead_letters);
    $("card-dead-letters").classList.toggle("alert", (o.dead_letters || 0) > 0);
    $("overview-generated").textContent = fmtTime(o.generated_at);
    if (o.timezone) $("time-zone").textContent = t("time.zone") + " " + o.timezone;
    if (o.today) {
      $("card-documents-today").setAttribute("href",
        "#documents?date_from=" + encodeURIComponent(o.today) + "&date_to=" + encodeURIComponent(o.today));
    }
    $("overview-no-links").hidden = (o.links || []).length > 0;
    $("overview-links").hidden = (o.links || []).length === 0;
    $("overview-links").tBodies[0].replaceChildren(...(o.links || []).map((link) =>
      el("tr", { "data-testid": "link-row", "data-link": link.name },
        el("td", {}, link.name),
        el("td", {}, el("span", { class: "link link-" + link.state, "data-state": link.state },
          label("link", link.state))),
        el("td", { class: "num" }, num(link.backlog)))));
    $("overview-recent").tBodies[0].replaceChildren(
      ...((recent && recent.items) || []).map((item) => documentRow(item, true)));
  }

  function renderDocuments(list) {
    const items = (list && list.items) || [];
    $("documents-table").tBodies[0].replaceChildren(...items.map((item) => documentRow(item)));
    $("documents-empty").hidden = items.length > 0;
  }

  function renderDocument(doc) {
    $("document-title").textContent = doc.title || doc.doc_number || doc.message_id;
    const facts = [
      ["doc.number", doc.doc_number],
      ["doc.sender", (doc.sender_name || "") + (doc.sender ? " (" + doc.sender + ")" : "")],
      ["doc.priority", label("priority", doc.priority)],
      ["doc.classification", label("classification", doc.classification)],
      ["doc.created", fmtTime(doc.created_at)],
      ["doc.deadline", fmtTime(doc.deadline)],
    ];
    $("document-facts").replaceChildren(...facts.flatMap(([k, v]) =>
      [el("dt", {}, t(k)), el("dd", { "data-testid": "fact-" + k.split(".")[1] }, v || "–")]));
    const recipients = doc.recipients || [];
    const counts = {};
    for (const r of recipients) counts[normState(r.state)] = (counts[normState(r.state)] || 0) + 1;
    $("document-summary").replaceChildren(
      progress(counts, recipients.length),
      ...STATES.filter((s) => counts[s]).map((s) =>
        el("span", { class: "chip state-" + s, "data-state": s }, label("state", s) + " " + counts[s])));
    const deadline = parseTime(doc.deadline);
    const late = deadline !== null && deadline.getTime() < Date.now();
    $("recipients-table").tBodies[0].replaceChildren(...recipients.map((r) => {
      const overdue = late && WAITING.includes(normState(r.state));
      return el("tr", { "data-testid": "recipient-row", "data-address": r.address,
        "data-state": normState(r.state), class: overdue ? "overdue" : null },
      el("td", {}, el("div", { class: "unit-name" }, r.name || r.address),
        el("div", { class: "address" }, r.address)),
      el("td", { "data-testid": "recipient-state" }, stateBadge(r.state),
        overdue ? el("span", { class: "tag late" }, t("rcpt.overdue")) : null),
      el("td", { class: "time" }, fmtTime(r.accepted_at)),
      el("td", { class: "time" }, fmtTime(r.routed_at)),
      el("td", { class: "time", "data-testid": "recipient-delivered-at" }, fmtTime(r.delivered_at)),
      el("td", { class: "time", "data-testid": "recipient-signed-for-at" }, fmtTime(r.signed_for_at)),
      el("td", { class: "time" }, fmtTime(r.returned_at)),
      el("td", { "data-testid": "recipient-person" }, r.person || ""),
      el("td", { class: "reason" }, r.reason || ""),
      el("td", { class: "num", "data-testid": "recipient-reminders" }, reminders(r.reminders)));
    }));
    const receipts = doc.receipts || [];
    $("receipts-table").tBodies[0].replaceChildren(...(receipts.length ? receipts.map((x) =>
      el("tr", { "data-testid": "receipt-row", "data-recipient": x.recipient,
        "data-event": normState(x.event) },
      el("td", { class: "time" }, fmtTime(x.at)),
      el("td", {}, nameOf(recipients, x.recipient)),
      el("td", {}, label("event", x.event)),
      el("td", { class: "reason" }, x.reason || ""))) :
      [el("tr", {}, el("td", { colspan: 4, class: "hint" }, t("doc.none")))]));
  }
  function reminders(v) {
    if (Array.isArray(v)) return v.length ? v.length + " (" + fmtTime(v[v.length - 1]) + ")" : "0";
    return num(v ?? 0);
  }
  function nameOf(recipients, address) {
    const r = recipients.find((x) => x.address === address);
    return r && r.name ? r.name : address;
  }

  function renderUnits(units) {
    const filter = $("units-filter").value.trim().toLowerCase();
    const offlineOnly = $("units-offline-only").checked;
    // offline units first: they are the ones to phone
    const items = ((units && units.items) || []).filter((u) =>
      (!filter || (u.name || "").toLowerCase().includes(filter) ||
        (u.address || "").toLowerCase().includes(filter)) && (!offlineOnly || !u.online))
      .sort((a, b) => (a.online === b.online ? 0 : a.online ? 1 : -1));
    const soon = Date.now() + 30 * 86400 * 1000;
    $("units-table").tBodies[0].replaceChildren(...items.map((u) => {
      const expiry = parseTime(u.cert_expiry);
      const certClass = !expiry ? "" : expiry.getTime() < Date.now() ? "expired" :
        expiry.getTime() < soon ? "expiring" : "";
      return el("tr", { "data-testid": "unit-row", "data-address": u.address,
        "data-online": u.online ? "true" : "false", class: u.online ? null : "offline" },
      el("td", {}, el("div", { class: "unit-name" }, u.name || u.address),
        el("div", { class: "address" },
          el("a", { href: "#documents?sender=" + encodeURIComponent(u.address),
            title: t("unit.sent_docs") }, u.address)),
        u.state ? el("div", { class: "hint" }, label("unitstate", u.state)) : null),
      el("td", {}, label("kind", u.kind)),
      el("td", { "data-testid": "unit-online" }, el("span", {
        class: "dot " + (u.online ? "on" : "off") }), t(u.online ? "unit.is_online" : "unit.is_offline")),
      el("td", { title: fmtTime(u.last_seen) }, relTime(u.last_seen)),
      el("td", {}, label("phase", u.phase)),
      el("td", { class: "num" }, num(u.sent)),
      el("td", { class: "num" }, num(u.received)),
      el("td", { class: "num" }, num(u.signed_for_on_time)),
      el("td", { class: "num" }, num(u.returned)),
      el("td", { class: "time " + certClass, "data-testid": "unit-cert-expiry" },
        expiry ? fmtTime(u.cert_expiry).slice(0, 10) : "–",
        certClass ? el("span", { class: "tag " + certClass },
          t(certClass === "expired" ? "unit.expired" : "unit.expiring")) : null));
    }));
  }

  function deadPage(r) {
    const n = parseInt(r.params.get("page") || "1", 10);
    return Number.isFinite(n) && n > 0 ? n : 1;
  }
  function deadHash(page, all) {
    const p = new URLSearchParams();
    if (page > 1) p.set("page", String(page));
    if (all) p.set("all", "1");
    const q = p.toString();
    return "#dead-letters" + (q ? "?" + q : "");
  }
  // A unit by its name, the address beneath; an address the hub does not know stays as given.
  function unitCell(name, address, fallback) {
    if (!address) return el("td", {}, fallback || "–");
    return el("td", { title: address }, el("div", { class: "unit-name" }, name || address),
      name ? el("div", { class: "address" }, address) : null);
  }
  function renderDeadLetters(dead) {
    const items = (dead && dead.items) || [];
    const total = (dead && dead.total) || 0;
    const offset = (dead && dead.offset) || 0;
    $("dead-letters-table").tBodies[0].replaceChildren(...items.map((x) => {
      const kind = x.kind ? label("dead.kind", x.kind) : "";
      const doc = x.title ? el("a", { href: documentHash(x.message_id) }, x.title) : null;
      const replay = x.replayed ? el("span", { class: "hint" }, t("dead.replayed")) :
        !x.kept ? el("span", { class: "hint" }, t("dead.not_kept")) :
          el("code", { class: "command", "data-testid": "dead-letter-replay" }, x.replay);
      return el("tr", { "data-testid": "dead-letter-row", "data-id": x.id, "data-message-id": x.message_id },
        el("td", { class: "time" }, fmtTime(x.at)),
        unitCell(x.sender_name, x.sender, x.sender_login),
        unitCell(x.recipient_name, x.recipient, x.kind === "document" ? t("dead.all_recipients") : "–"),
        el("td", { "data-testid": "dead-letter-number" }, x.doc_number || "–"),
        el("td", { class: "title", "data-testid": "dead-letter-title" }, doc || (x.message_id || "–"),
          kind ? el("div", { class: "hint" }, kind) : null),
        el("td", { "data-testid": "dead-letter-code" },
          el("span", { class: "state state-dead_letter", "data-code": x.code }, x.code),
          el("div", {}, lang === "en" ? (x.code_en || "") : (x.code_zh || "")),
          x.reason ? el("div", { class: "hint reason" }, x.reason) : null),
        el("td", { class: "num", "data-testid": "dead-letter-tries" }, num(x.tries)),
        el("td", {}, replay));
    }));
    $("dead-letters-empty").hidden = items.length > 0;
    $("dead-letters-all").checked = !!route.params.get("all");
    $("dead-letters-page").textContent = total ? t("pager.text",
      { from: offset + 1, to: offset + items.length, n: total }) : "";
    $("dead-letters-prev").disabled = offset <= 0;
    $("dead-letters-next").disabled = offset + items.length >= total;
  }

  // ---------- timers and events ----------
  function startTimer() {
    if (timer === null && $("auto-refresh").checked) timer = setInterval(refresh, REFRESH_MS);
  }
  function stopTimer() { if (timer !== null) { clearInterval(timer); timer = null; } }

  function syncSearchForm() {
    for (const f of SEARCH_FIELDS) {
      $("search-" + f.replace("_", "-")).value = route.params.get(f) || "";
    }
    for (const f of SEARCH_FLAGS) $("search-" + f).checked = !!route.params.get(f);
  }
  function syncUnitsForm() {
    if (route.view === "units" && route.params.get("offline")) $("units-offline-only").checked = true;
  }

  window.addEventListener("hashchange", () => {
    route = parseRoute();
    shown = null;
    if (route.view === "documents") syncSearchForm();
    syncUnitsForm();
    showApp();
    refresh();
  });
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const f of SEARCH_FIELDS) {
      const v = $("search-" + f.replace("_", "-")).value.trim();
      if (v) p.set(f, v);
    }
    for (const f of SEARCH_FLAGS) if ($("search-" + f).checked) p.set(f, "1");
    const q = p.toString();
    go("#documents" + (q ? "?" + q : ""));
  });
  $("search-reset").addEventListener("click", () => {
    for (const f of SEARCH_FIELDS) $("search-" + f.replace("_", "-")).value = "";
    for (const f of SEARCH_FLAGS) $("search-" + f).checked = false;
    go("#documents");
  });
  $("dead-letters-prev").addEventListener("click", () =>
    go(deadHash(deadPage(route) - 1, !!route.params.get("all"))));
  $("dead-letters-next").addEventListener("click", () =>
    go(deadHash(deadPage(route) + 1, !!route.params.get("all"))));
  $("dead-letters-all").addEventListener("change", () => go(deadHash(1, $("dead-letters-all").checked)));
  $("units-filter").addEventListener("input", render);
  $("units-offline-only").addEventListener("change", render);
  $("lang-toggle").addEventListener("click", () => {
    lang = lang === "en" ? "zh-CN" : "en";
    localStorage.setItem("docex.lang", lang);
    applyI18n();
    render();
  });
  const auto = $("auto-refresh");
  auto.checked = localStorage.getItem("docex.autorefresh") !== "off";
  auto.addEventListener("change", () => {
    localStorage.setItem("docex.autorefresh", auto.checked ? "on" : "off");
    if (auto.checked) { startTimer(); refresh(); } else stopTimer();
  });

  applyI18n();
  syncSearchForm();
  syncUnitsForm();
  refresh();
})();
