// lookout dashboard: small progressive enhancements. Every page works without it.
"use strict";

// Ask before destructive actions.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

const STATES = {
  OK: ["ok", "OK"],
  UPDATE: ["update", "Update"],
  WARNING: ["warning", "Warning"],
  FAILURE: ["failure", "Failure"],
  UNKNOWN: ["unknown", "Unknown"],
};

// Times: the hub writes them in UTC inside <time datetime=…>; here they are
// shown in the reader's time zone, and relative ones ("3 min ago") are kept
// current with the absolute time on hover.
function relative(date) {
  const secs = Math.round((Date.now() - date.getTime()) / 1000);
  const a = Math.abs(secs);
  let text;
  if (a < 60) text = a + " s";
  else if (a < 3600) text = Math.round(a / 60) + " min";
  else if (a < 172800) text = Math.round(a / 3600) + " h";
  else text = Math.round(a / 86400) + " d";
  return secs >= 0 ? text + " ago" : "in " + text;
}

function localStamp(date) {
  const two = (n) => String(n).padStart(2, "0");
  const zone = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
    .formatToParts(date).find((p) => p.type === "timeZoneName");
  return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate()) + " " +
    two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds()) +
    (zone ? " " + zone.value : "");
}

function showTimes(root) {
  root.querySelectorAll("time[datetime]").forEach((el) => {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) return;
    if (el.classList.contains("ago")) {
      el.textContent = relative(date);
      el.title = localStamp(date);
    } else {
      if (!el.title) el.title = el.textContent;
      el.textContent = localStamp(date);
    }
  });
}
showTimes(document);
setInterval(() => showTimes(document), 15000);

// Forms that take a wall-clock time send the reader's zone with it.
const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
if (browserZone) {
  document.querySelectorAll("input[data-browser-zone]").forEach((el) => { el.value = browserZone; });
  document.querySelectorAll("[data-zone-name]").forEach((el) => { el.textContent = browserZone; });
}

// What a dashboard row says about the last check (its time is shown apart).
function detail(s) {
  if (s.paused) return "paused: not checked until resumed";
  if (!s.health_url) return s.state_reason || "no health endpoint";
  if (!s.last_health_check) return "not checked yet";
  const parts = [];
  if (s.last_error) parts.push(s.last_error);
  else if (s.last_response_code) parts.push("HTTP " + s.last_response_code);
  if (s.last_latency_ms != null) parts.push(s.last_latency_ms + " ms");
  return parts.join(" · ");
}

function checkedTime(cell, s) {
  let span = cell.querySelector(".detail-time");
  if (s.paused || !s.health_url || !s.last_health_check) {
    if (span) span.remove();
    return;
  }
  if (!span) {
    span = document.createElement("span");
    span.className = "detail-time";
    span.append(" · ", document.createElement("time"));
    span.lastChild.className = "ago";
    cell.append(span);
  }
  span.querySelector("time").setAttribute("datetime", s.last_health_check);
  showTimes(span);
}

// Keep the dashboard's dots, labels, counts and order current without a
// reload: failing first, then warning, unknown, OK, by name within each
// (as the hub sorts them).
const SEVERITY = { failure: 0, warning: 1, update: 1, unknown: 2, ok: 3 };

// The page's filters, as the API takes them.
function filterQuery() {
  const page = new URLSearchParams(window.location.search);
  const api = new URLSearchParams();
  for (const key of ["state", "kind", "tag", "q"]) {
    const value = page.get(key);
    if (value) api.set(key, value);
  }
  const query = api.toString();
  return query ? "?" + query : "";
}

async function fetchServices(query) {
  const response = await fetch("/api/services" + query, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(String(response.status));
  return response.json();
}

async function refreshServices() {
  let all, shown;
  try {
    all = await fetchServices("");
    const query = filterQuery();
    shown = query ? await fetchServices(query) : all;
  } catch (_) {
    return; // The hub is restarting or unreachable: try again on the next tick.
  }
  const counts = { ok: 0, failure: 0, warning: 0, unknown: 0 };
  for (const s of all) {
    const [cls] = STATES[s.state] || STATES.UNKNOWN;
    counts[cls === "update" ? "warning" : cls] += 1;
  }
  for (const [key, n] of Object.entries(counts)) {
    const el = document.getElementById("count-" + key);
    if (el) el.textContent = String(n);
  }
  // Grouped by tag, a service has a row in each of its tags' sections.
  const rows = new Map();
  for (const row of document.querySelectorAll("tr[data-id]")) {
    if (!rows.has(row.dataset.id)) rows.set(row.dataset.id, []);
    rows.get(row.dataset.id).push(row);
  }
  if (rows.size !== shown.length || shown.some((s) => !rows.has(String(s.id)))) {
    window.location.reload(); // Services were added, removed, or left the filter.
    return;
  }
  for (const s of shown) {
    for (const row of rows.get(String(s.id))) updateRow(row, s);
  }
  // Sorted by usage, rows keep the server's order; else by status, then name.
  const key = (row) => row.dataset.rank !== undefined
    ? [Number(row.dataset.rank)]
    : [Number(row.dataset.severity), row.dataset.name.toLowerCase(), Number(row.dataset.id)];
  for (const body of document.querySelectorAll("#services tbody")) {
    const before = [...body.querySelectorAll("tr[data-id]")];
    const after = [...before].sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      for (let i = 0; i < x.length; i++) {
        if (x[i] < y[i]) return -1;
        if (x[i] > y[i]) return 1;
      }
      return 0;
    });
    if (after.some((row, i) => row !== before[i])) {
      for (const row of after) body.appendChild(row);
    }
    const count = body.querySelector(".group-count");
    if (count) {
      const failing = before.filter((r) => r.dataset.severity === "0").length;
      count.replaceChildren(before.length + (before.length === 1 ? " service" : " services"));
      if (failing > 0) {
        const note = document.createElement("span");
        note.className = "failing";
        note.textContent = failing + " failing";
        count.append(" · ", note);
      }
    }
  }
}

function updateRow(row, s) {
  const [cls, label] = STATES[s.state] || STATES.UNKNOWN;
  row.querySelector(".dot").className = "dot " + cls;
  row.querySelector(".label").textContent = label;
  const cell = row.querySelector(".detail");
  cell.querySelector(".detail-text").textContent = detail(s);
  checkedTime(cell, s);
  row.dataset.severity = String(SEVERITY[cls]);
  // A new check: its beat joins the bar, the oldest leaves.
  if (s.last_health_check && s.last_health_check !== row.dataset.checked) {
    const beats = [...row.querySelectorAll("svg.beats rect")];
    if (beats.length > 0 && row.dataset.checked) {
      const classes = beats.map((b) => b.getAttribute("class"));
      classes.shift();
      classes.push(s.health_status === "healthy" ? "ok" : "fail");
      beats.forEach((b, i) => b.setAttribute("class", classes[i]));
    }
    row.dataset.checked = s.last_health_check;
  }
}

// The filter menus apply as they change.
const filters = document.getElementById("filters");
if (filters) {
  filters.querySelectorAll("select").forEach((select) => {
    select.addEventListener("change", () => filters.requestSubmit());
  });
}

// Keeps a stream open while the page is shown. A page the browser keeps in
// its back/forward cache must not hold its stream: browsers allow six
// connections to a host, and a few cached pages' streams would leave the
// next page waiting for a free one. The stream is closed when the page is
// hidden and opened again if it comes back.
function followWhileShown(open, reopen = open) {
  let stream = open();
  window.addEventListener("pagehide", () => {
    if (stream) stream.close();
    stream = null;
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && !stream) stream = reopen();
  });
}

// Follow the hub's event stream and refresh the table when something changes.
// EventSource reconnects by itself and resumes with Last-Event-ID; a slow
// poll covers anything a broken proxy might swallow.
if (document.body.dataset.live === "services") {
  let pending = null;
  const soon = () => {
    if (pending === null) {
      pending = setTimeout(() => {
        pending = null;
        refreshServices();
      }, 100);
    }
  };
  if (window.EventSource) {
    followWhileShown(() => {
      const stream = new EventSource("/api/events");
      for (const type of ["status", "check", "result", "service.created", "service.updated", "service.deleted", "scan"]) {
        stream.addEventListener(type, soon);
      }
      stream.addEventListener("open", soon);
      return stream;
    });
  }
  setInterval(refreshServices, 30000);
}

// A unit's journal, followed live on its service page: new lines are added
// as the unit writes them (the last 200 are kept on the page).
const unitLog = document.getElementById("unit-log");
if (unitLog && unitLog.dataset.follow && window.EventSource) {
  // Back from the cache, the page is read again rather than the log
  // followed twice.
  followWhileShown(
    () => followLog(new EventSource(unitLog.dataset.follow)),
    () => window.location.reload(),
  );
}

function followLog(stream) {
  stream.addEventListener("open", () => {
    const note = document.getElementById("unit-log-live");
    if (note) note.hidden = false;
  });
  stream.addEventListener("log", (event) => {
    let entry;
    try {
      entry = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    const time = entry.time ? new Date(entry.time).toISOString().substring(11, 19) : "";
    unitLog.append(time + "  " + entry.message + "\n");
    const lines = unitLog.textContent.split("\n");
    if (lines.length > 201) unitLog.textContent = lines.slice(-201).join("\n");
    unitLog.hidden = false;
    const empty = document.getElementById("unit-log-empty");
    if (empty) empty.hidden = true;
    unitLog.scrollTop = unitLog.scrollHeight;
  });
  return stream;
}

// The service form: show the fields the chosen check uses, and a URL
// example of its kind. Without this script every field shows.
(function () {
  const check = document.getElementById("check");
  const url = document.getElementById("base_url");
  if (!check || !url) return;
  const examples = {
    http: "http://192.168.1.10:3000",
    tcp: "tcp://192.168.1.10:5432",
    tls: "tls://mail.home.lan:993",
    icmp: "icmp://192.168.1.1",
    dns: "dns://192.168.1.1",
  };
  const conditions = document.getElementById("conditions");
  const conditionExamples = {
    http: "[STATUS] == 200\n[BODY].status == UP\nwarn: [CERTIFICATE_EXPIRATION] > 336h",
    tcp: "[CONNECTED] == true\nwarn: [RESPONSE_TIME] < 100",
    tls: "[CONNECTED] == true\nwarn: [CERTIFICATE_EXPIRATION] > 336h",
    icmp: "[CONNECTED] == true\nwarn: [RESPONSE_TIME] < 50",
    dns: "[DNS_RCODE] == NOERROR\n[BODY] == 192.168.1.20",
  };
  const show = () => {
    const kind = check.value;
    if (conditions) conditions.placeholder = conditionExamples[kind] || "";
    document.querySelectorAll("[data-kinds]").forEach((field) => {
      field.hidden = !field.dataset.kinds.split(" ").includes(kind);
    });
    url.placeholder = examples[kind] || "";
  };
  // A URL typed with a scheme chooses the check.
  url.addEventListener("change", () => {
    const m = /^([a-z]+):\/\//i.exec(url.value.trim());
    const scheme = m && (m[1].toLowerCase() === "https" ? "http" : m[1].toLowerCase());
    if (scheme && examples[scheme] && scheme !== check.value) {
      check.value = scheme;
      show();
    }
  });
  check.addEventListener("change", show);
  show();
})();

// The service form's conditions, checked by the hub as they are typed
// (POST /api/conditions/check); the error shows under the field at once,
// as it would after saving.
(function () {
  const area = document.getElementById("conditions");
  if (!area) return;
  const field = area.closest(".field");
  const csrf = area.form && area.form.querySelector("input[name=_csrf]");
  const prefix = "warn:";
  const show = (text) => {
    let error = document.getElementById("conditions-error");
    if (!text) {
      if (error) error.remove();
      field.classList.remove("invalid");
      area.removeAttribute("aria-invalid");
      return;
    }
    if (!error) {
      error = document.createElement("p");
      error.className = "field-error";
      error.id = "conditions-error";
      area.insertAdjacentElement("afterend", error);
    }
    error.textContent = text;
    field.classList.add("invalid");
    area.setAttribute("aria-invalid", "true");
    area.setAttribute("aria-describedby", "conditions-error");
  };
  let timer = null;
  const check = async () => {
    // Each condition with its line in the box (blank lines count).
    const numbered = area.value.split("\n").map((l, i) => [l.trim(), i + 1]).filter(([l]) => l);
    const conditions = numbered.map(([l]) =>
      l.startsWith(prefix) ? { expr: l.slice(prefix.length).trim(), on_fail: "WARNING" } : l);
    const headers = { "Content-Type": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf.value;
    try {
      const r = await fetch("/api/conditions/check", {
        method: "POST", headers, credentials: "same-origin", body: JSON.stringify({ conditions }),
      });
      if (r.ok) return show("");
      const body = await r.json();
      const messages = (body.fields || []).map((f) => {
        const m = /^conditions\[(\d+)\]$/.exec(f.field);
        const line = m && numbered[Number(m[1])];
        return line ? `Line ${line[1]}: ${f.message}` : f.message;
      });
      show(messages.join("; "));
    } catch (_) {
      // The hub is out of reach: saving will say what is wrong.
    }
  };
  area.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  });
  area.addEventListener("change", check);
})();

// Copy buttons: copy the text of the element they name. They stay hidden
// without this script, where selecting the text does the same.
document.querySelectorAll("button[data-copy]").forEach((button) => {
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const text = source.textContent.trim();
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // No clipboard here (plain HTTP to another host): select it instead.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
      return;
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
});

// The channel form: show the settings the chosen kind takes. Without this
// script every field shows, and the hub takes the chosen kind's alone.
(function () {
  const form = document.getElementById("channel-form");
  const kind = document.getElementById("kind");
  if (!form || !kind) return;
  const show = () => {
    form.querySelectorAll("[data-kinds]").forEach((field) => {
      field.hidden = !field.dataset.kinds.split(" ").includes(kind.value);
    });
  };
  kind.addEventListener("change", show);
  show();
})();

// The installable app: its service worker keeps the last dashboard for
// offline use and shows Web Push notifications. Browsers run one only on
// HTTPS or localhost. Signing out forgets the pages it kept.
(function () {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
  if (location.pathname === "/login") {
    if (window.caches) caches.delete("lookout-pages-v1");
    return;
  }
  navigator.serviceWorker.register("/sw.js").catch(() => {});
})();

// "Notify this device": ask the browser for a push subscription with the
// hub's key and give it to the hub (POST /api/v1/users/me/devices).
(function () {
  const box = document.getElementById("push-device");
  const button = document.getElementById("push-subscribe");
  const status = document.getElementById("push-status");
  if (!box || !button || !status) return;
  const say = (text) => { status.textContent = text; };
  if (!window.isSecureContext) {
    button.disabled = true;
    return say("Notifications need this page on HTTPS (or on localhost).");
  }
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    button.disabled = true;
    return say("This browser cannot receive push notifications.");
  }
  const key = (text) => {
    const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  };
  const csrf = document.querySelector("input[name=_csrf]");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if ((await Notification.requestPermission()) !== "granted") {
        return say("Notifications are blocked for this site: allow them in the browser's site settings.");
      }
      const registration = await navigator.serviceWorker.register("/sw.js");
      await navigator.serviceWorker.ready;
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: key(box.dataset.key),
      });
      const headers = { "Content-Type": "application/json" };
      if (csrf) headers["X-CSRF-Token"] = csrf.value;
      const r = await fetch("/api/v1/users/me/devices", {
        method: "POST", headers, credentials: "same-origin", body: JSON.stringify(subscription.toJSON()),
      });
      if (r.ok) return location.reload();
      const body = await r.json().catch(() => ({}));
      say(body.message || `The hub refused it (HTTP ${r.status}).`);
    } catch (e) {
      say(`This browser could not subscribe: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  });
})();
