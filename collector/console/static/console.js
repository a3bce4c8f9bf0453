// The Intilery console's page: live events (Server-Sent Events), the dashboard, profiles, audiences, destinations,
// journeys, privacy requests.
// Everything taken from events is put on the page as text (textContent), never as HTML.
(function () {
  "use strict";
  var MAX_ROWS = 500;      // rows kept on the page; older ones are removed
  var MAX_HELD = 2000;     // events held while paused; more are dropped and counted
  var COLORS = { track: "#3b6fd8", page: "#2a9d8f", screen: "#8ab17d", identify: "#e9c46a", group: "#f4a261", alias: "#a26bd8" };
  var REJECTED_COLOR = "#d62839";

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (tag === "td" && node.textContent) node.title = node.textContent; // the whole value, when the cell cuts it
    if (cls) node.className = cls;
    return node;
  }
  function str(v) { return typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v); }

  // --- tabs -------------------------------------------------------------------------------
  var dashboardTimer = null, regulationsTimer = null;
  document.querySelectorAll("nav button").forEach(function (button) {
    button.addEventListener("click", function () { showTab(button.getAttribute("data-tab")); });
  });
  function showTab(name) {
    document.querySelectorAll("nav button").forEach(function (b) { b.classList.toggle("active", b.getAttribute("data-tab") === name); });
    ["live", "dashboard", "profiles", "audiences", "destinations", "journeys", "privacy"].forEach(function (id) { $(id).hidden = id !== name; });
    clearInterval(dashboardTimer);
    clearTimeout(regulationsTimer); regulationsTimer = null;
    if (name === "dashboard") { loadDashboard(); dashboardTimer = setInterval(loadDashboard, 2000); }
    if (name === "privacy") loadRegulations();
    if (name === "audiences") loadAudiences();
    if (name === "destinations") loadDestinations();
    if (name === "journeys") loadJourneys();
  }

  // --- live events ------------------------------------------------------------------------
  var source = null, paused = false, held = [], seen = new Set(), seenOrder = [];
  var counts = { shown: 0, accepted: 0, rejected: 0, dropped: 0 }, droppedBefore = 0, droppedNow = 0, droppedHere = 0;
  var selected = null, detailMode = "pretty";

  function filterQuery() {
    var params = new URLSearchParams();
    ["source", "type", "event", "user", "status", "q"].forEach(function (name) {
      var value = $("f-" + name).value.trim();
      if (value) params.set(name, value);
    });
    return params.toString();
  }

  function connect() {
    if (source) source.close();
    var query = filterQuery();
    source = new EventSource("/console/stream" + (query ? "?" + query : ""));
    setState("connecting");
    source.onopen = function () { droppedBefore += droppedNow; droppedNow = 0; setState("live"); };
    source.onerror = function () { setState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting"); };
    source.addEventListener("accepted", receive);
    source.addEventListener("rejected", receive);
    source.addEventListener("dropped", function (e) { droppedNow = JSON.parse(e.data).dropped; updateCounts(); });
    source.addEventListener("gap", function (e) {
      $("gap").hidden = false;
      $("gap").textContent = JSON.parse(e.data).message;
    });
  }

  function setState(text) { $("state").textContent = paused ? "paused (" + text + ")" : text; $("state").setAttribute("data-state", text); }

  function receive(e) {
    var data = JSON.parse(e.data);
    if (seen.has(data.key)) return; // a reconnect may repeat what another worker already sent
    seen.add(data.key); seenOrder.push(data.key);
    if (seenOrder.length > 10000) seen.delete(seenOrder.shift());
    if (paused) {
      if (held.length >= MAX_HELD) { droppedHere++; updateCounts(); return; }
      held.push(data); $("n-held").textContent = held.length; return;
    }
    show(data);
  }

  function payloadOf(record) {
    var payload = record.payload;
    if (typeof payload === "string") { try { payload = JSON.parse(payload); } catch (err) { payload = null; } }
    return payload && typeof payload === "object" && !Array.isArray(payload) ? payload : {};
  }

  function show(data) {
    var record;
    try { record = JSON.parse(data.raw); } catch (err) { record = { unparsed: data.raw }; }
    var rejected = data.status === "rejected";
    var message = rejected ? payloadOf(record) : record;
    var type = str(message.type);
    var page = message.context && message.context.page;
    var name = type === "track" || (!type && message.event) ? message.event
      : (message.name || message.groupId || message.previousId || (type === "page" && page ? page.path : ""));
    var row = el("tr", null, data.status);
    row.setAttribute("data-key", data.key);
    row.appendChild(el("td", str(record.receivedAt).slice(11, 23)));
    row.appendChild(el("td", data.status, "status"));
    row.appendChild(el("td", type));
    row.appendChild(el("td", str(name)));
    row.appendChild(el("td", str(message.userId || message.anonymousId)));
    row.appendChild(el("td", str(record.source)));
    row.appendChild(el("td", rejected ? str(record.code) : ""));
    row._data = data; row._record = record;
    row.addEventListener("click", function () { open(row); });
    var rows = $("rows");
    rows.insertBefore(row, rows.firstChild);
    while (rows.childNodes.length > MAX_ROWS) rows.removeChild(rows.lastChild);
    $("empty").hidden = true;
    counts.shown++; counts[data.status]++;
    updateCounts();
  }

  function updateCounts() {
    $("shown").textContent = counts.shown;
    $("n-accepted").textContent = counts.accepted;
    $("n-rejected").textContent = counts.rejected;
    $("dropped").textContent = droppedBefore + droppedNow + droppedHere;
  }

  function open(row) {
    if (selected) selected.classList.remove("selected");
    selected = row; row.classList.add("selected");
    $("detail").hidden = false;
    var record = row._record;
    var reason = $("detail-reason");
    reason.hidden = row._data.status !== "rejected";
    reason.textContent = row._data.status === "rejected" ? str(record.code) + ": " + str(record.message) : "";
    renderDetail();
  }

  function renderDetail() {
    if (!selected) return;
    $("show-pretty").classList.toggle("active", detailMode === "pretty");
    $("show-raw").classList.toggle("active", detailMode === "raw");
    $("detail-body").textContent = detailMode === "pretty" ? JSON.stringify(selected._record, null, 2) : selected._data.raw;
  }
  $("show-pretty").addEventListener("click", function () { detailMode = "pretty"; renderDetail(); });
  $("show-raw").addEventListener("click", function () { detailMode = "raw"; renderDetail(); });
  $("close-detail").addEventListener("click", function () {
    $("detail").hidden = true; if (selected) selected.classList.remove("selected"); selected = null;
  });

  $("pause").addEventListener("click", function () {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    $("held").hidden = !paused;
    if (!paused) { var waiting = held; held = []; waiting.forEach(show); $("n-held").textContent = 0; }
    setState($("state").getAttribute("data-state") || "live");
  });

  function restart() {
    $("rows").textContent = ""; $("empty").hidden = false; $("gap").hidden = true;
    seen = new Set(); seenOrder = []; held = [];
    counts = { shown: 0, accepted: 0, rejected: 0 }; droppedBefore = droppedNow = droppedHere = 0;
    updateCounts(); connect();
  }
  $("filters").addEventListener("submit", function (e) { e.preventDefault(); restart(); });
  $("clear").addEventListener("click", function () { $("filters").reset(); restart(); });

  // --- dashboard --------------------------------------------------------------------------
  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function loadDashboard() {
    fetch("/console/api/dashboard", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(renderDashboard)
      .catch(function () {});
  }

  function renderDashboard(d) {
    if (!d || !d.minutes) return;
    $("d-accepted").textContent = d.accepted;
    $("d-rejected").textContent = d.rejected;
    $("d-visitors").textContent = d.visitors + (d.visitors_capped ? "+" : "");
    $("d-note").hidden = d.ready && !d.behind;
    $("d-note").textContent = !d.ready ? "reading the last hour of the log..." : "catching up: ingest is busy, the console reads the log at a lower priority";
    var chart = $("chart"); chart.textContent = "";
    var W = 720, H = 200, left = 40, bottom = 20, top = 10;
    var max = 1;
    d.minutes.forEach(function (m) {
      var total = m.rejected; Object.keys(m.types).forEach(function (t) { total += m.types[t]; });
      if (total > max) max = total;
    });
    var slot = (W - left) / d.minutes.length, scale = (H - bottom - top) / max;
    chart.appendChild(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#c5cad6" }));
    chart.appendChild(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, String(max)));
    chart.appendChild(svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end" }, "0"));
    d.minutes.forEach(function (m, i) {
      var y = H - bottom, x = left + i * slot + 1;
      var parts = Object.keys(COLORS).filter(function (t) { return m.types[t]; }).map(function (t) { return [t, m.types[t], COLORS[t]]; });
      Object.keys(m.types).forEach(function (t) { if (!COLORS[t]) parts.push([t, m.types[t], "#999"]); });
      if (m.rejected) parts.push(["rejected", m.rejected, REJECTED_COLOR]);
      parts.forEach(function (p) {
        var h = p[1] * scale; y -= h;
        var bar = svg("rect", { x: x, y: y, width: Math.max(slot - 2, 1), height: h, fill: p[2], "class": "bar", "data-kind": p[0] });
        bar.appendChild(svg("title", {}, m.minute + " " + p[0] + ": " + p[1]));
        chart.appendChild(bar);
      });
      if (i % 10 === 0) chart.appendChild(svg("text", { x: x, y: H - 6 }, m.minute.slice(11, 16)));
    });
    var legend = $("legend"); legend.textContent = "";
    Object.keys(COLORS).concat(["rejected"]).forEach(function (t) {
      var item = el("span"), swatch = el("i"); swatch.style.background = COLORS[t] || REJECTED_COLOR;
      item.appendChild(swatch); item.appendChild(document.createTextNode(t)); legend.appendChild(item);
    });
    table($("top-codes"), d.top_codes); table($("top-events"), d.top_events);
    table($("top-pages"), d.top_pages); table($("top-sources"), d.top_sources);
  }

  function table(node, pairs) {
    node.textContent = "";
    if (!pairs.length) { var empty = el("tr"); empty.appendChild(el("td", "none yet", "hint")); node.appendChild(empty); return; }
    pairs.forEach(function (pair) {
      var row = el("tr"); row.appendChild(el("td", str(pair[0]))); row.appendChild(el("td", str(pair[1]))); node.appendChild(row);
    });
  }

  // --- profiles ---------------------------------------------------------------------------
  $("profile-search").addEventListener("submit", function (e) {
    e.preventDefault();
    $("p-error").hidden = true;
    if ($("p-type").value === "search") { $("p-matches").textContent = ""; findPeople($("p-value").value.trim(), ""); return; }
    showProfile($("p-type").value + ":" + $("p-value").value.trim());
  });

  function failed(answer) {
    if (answer[0]) return false;
    $("profile").hidden = true; $("p-error").hidden = false; $("p-error").textContent = answer[1].message; return true;
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return [r.ok, body]; }); });
  }

  function showProfile(id) {
    getJSON("/console/api/profiles/" + encodeURIComponent(id)).then(function (answer) {
      if (!failed(answer)) renderProfile(answer[1]);
    });
  }

  // A page of people whose identifier or trait begins with q (GET /console/api/profiles?q=); a row opens one.
  function findPeople(q, next) {
    getJSON("/console/api/profiles?q=" + encodeURIComponent(q) + (next ? "&next=" + encodeURIComponent(next) : ""))
      .then(function (answer) {
        if (failed(answer)) return;
        var table = $("p-matches");
        $("p-results").hidden = false; $("profile").hidden = true;
        if (!answer[1].data.length && !next) {
          var none = el("tr"); none.appendChild(el("td", "no profile matches", "hint")); table.appendChild(none);
        }
        answer[1].data.forEach(function (match) {
          var row = el("tr"), open = el("button", match.profile_id);
          open.type = "button";
          open.addEventListener("click", function () { $("p-results").hidden = true; showProfile("profile_id:" + match.profile_id); });
          var cell = el("td"); cell.appendChild(open); row.appendChild(cell);
          row.appendChild(el("td", match.identifiers.slice(0, 4).join("  ")));
          row.appendChild(el("td", "last seen " + str(match.last_seen)));
          table.appendChild(row);
        });
        var more = $("p-more");
        more.hidden = !answer[1].cursor.has_more;
        more.onclick = function () { findPeople(q, answer[1].cursor.next); };
      });
  }

  function pairs(object) { return Object.keys(object || {}).map(function (k) { return [k, str(object[k])]; }); }

  function renderProfile(p) {
    $("profile").hidden = false;
    $("p-id").textContent = p.profile_id;
    var ids = $("p-ids"); ids.textContent = "";
    p.external_ids.forEach(function (x) {
      var row = el("tr"); row.appendChild(el("td", x.type)); row.appendChild(el("td", x.id)); row.appendChild(el("td", x.source));
      ids.appendChild(row);
    });
    table($("p-traits"), pairs(p.traits));
    table($("p-computed"), pairs(p.computed_traits));
    table($("p-audiences"), (p.audiences || []).map(function (a) { return [a.name + " (" + a.key + ")", when(a.entered_at)]; }));
    table($("p-journeys"), (p.journeys || []).map(function (r) {
      var at = r.state === "active" ? "at " + (r.step || "-") : str(r.outcome || r.state);
      return [r.journey + (r.instance ? " (" + r.instance + ")" : ""), at + (r.next_at ? ", next timer " + epoch(r.next_at) : "")];
    }));
    var events = $("p-events"); events.textContent = "";
    p.events.forEach(function (ev) {
      var row = el("tr");
      row.appendChild(el("td", str(ev.receivedAt)));
      row.appendChild(el("td", str(ev.type)));
      row.appendChild(el("td", str(ev.event || ev.name || (ev.context && ev.context.page && ev.context.page.path) || "")));
      row.appendChild(el("td", str(ev.source)));
      events.appendChild(row);
    });
  }

  // --- audiences --------------------------------------------------------------------------
  // Each audience's size now, its last change and a sparkline of its size over the last 30 days (or hours).
  $("a-period").addEventListener("change", function () { loadAudiences(); });

  function loadAudiences() {
    var period = $("a-period").value;
    getJSON("/console/api/audiences?period=" + encodeURIComponent(period)).then(function (answer) {
      $("a-error").hidden = answer[0];
      if (!answer[0]) { $("a-error").textContent = answer[1].message; return; }
      renderAudiences(answer[1]);
    }, function () { $("a-error").hidden = false; $("a-error").textContent = "the collector did not answer"; });
  }

  function sparkline(values, at) {
    var W = 180, H = 32, max = Math.max.apply(null, values.concat([1]));
    var line = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, "class": "spark", role: "img" });
    var step = values.length > 1 ? W / (values.length - 1) : W;
    var points = values.map(function (v, i) { return (i * step).toFixed(1) + "," + (H - 2 - (v / max) * (H - 4)).toFixed(1); });
    line.appendChild(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#3b6fd8", "stroke-width": 1.5 }));
    line.appendChild(svg("title", {}, values.map(function (v, i) { return when(at[i]) + ": " + v; }).join("\n")));
    return line;
  }

  function renderAudiences(d) {
    var list = $("a-list"); list.textContent = "";
    $("a-series-head").textContent = d.period === "hour" ? "last 30 hours" : "last 30 days";
    $("a-empty").hidden = d.audiences.length > 0;
    $("a-backfill").hidden = !d.backfilling;
    d.audiences.forEach(function (a) {
      var row = el("tr"); row.setAttribute("data-key", a.key);
      row.appendChild(el("td", a.key)); row.appendChild(el("td", a.name));
      row.appendChild(el("td", a.size.toLocaleString(), "size"));
      row.appendChild(el("td", a.updated_at ? when(a.updated_at) : "never"));
      var cell = el("td"); cell.appendChild(sparkline(d.sizes[a.key] || [], d.at)); row.appendChild(cell);
      list.appendChild(row);
    });
  }

  // --- destinations -----------------------------------------------------------------------
  // Per destination: its deliveries by state, those that ended in each of the last 60 minutes (a bar
  // chart: delivered, failed, dead), its dead deliveries with their last answer, a Replay button (confirmed).
  var replaying = null; // the destination whose replay waits for its confirmation
  function epoch(seconds) { return seconds ? when(new Date(seconds * 1000).toISOString()) : ""; }
  function shown(node, text) { node.hidden = !text; node.textContent = text || ""; }

  function loadDestinations() {
    getJSON("/console/api/destinations").then(function (a) {
      shown($("d-error"), a[0] ? "" : a[1].message);
      if (a[0]) renderDestinations(a[1]);
    }, function () { shown($("d-error"), "the collector did not answer"); });
  }

  var MINUTE_COLORS = { delivered: "#2a9d8f", failed: "#f4a261", dead: "#d62839" };
  function minuteChart(minutes, since) {
    var W = 720, H = 70, n = minutes.delivered.length, bw = W / n, max = 1, i;
    for (i = 0; i < n; i++) max = Math.max(max, minutes.delivered[i] + minutes.failed[i] + minutes.dead[i]);
    var chart = svg("svg", { viewBox: "0 0 " + W + " " + H, "class": "minutes", role: "img", preserveAspectRatio: "none" });
    chart.appendChild(svg("title", {}, "deliveries per minute since " + epoch(since) + " (most in a minute: " + max + ")"));
    chart.appendChild(svg("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, stroke: "#c5cad6", "stroke-width": 1 }));
    for (i = 0; i < n; i++) {
      var y = H;
      ["delivered", "failed", "dead"].forEach(function (state) {
        var v = minutes[state][i]; if (!v) return;
        var h = (v / max) * (H - 2); y -= h;
        var bar = svg("rect", { x: (i * bw + 1).toFixed(1), y: y.toFixed(1), width: (bw - 2).toFixed(1), height: h.toFixed(1),
                                fill: MINUTE_COLORS[state], "data-state": state, "data-minute": i });
        bar.appendChild(svg("title", {}, epoch(since + i * 60) + " " + state + ": " + v));
        chart.appendChild(bar);
      });
    }
    return chart;
  }

  function figure(name, value, cls) {
    var box = el("div", null, cls); box.setAttribute("data-figure", name);
    box.appendChild(el("b", Number(value || 0).toLocaleString())); box.appendChild(el("span", name)); return box;
  }

  function renderDestinations(d) {
    var list = $("d-list"); list.textContent = "";
    $("d-empty").hidden = d.data.length > 0;
    shown($("d-problems"), d.problems.join("\n"));
    d.data.forEach(function (x) {
      var card = el("div", null, "card dest"); card.setAttribute("data-name", x.name);
      var head = el("h2", x.name);
      head.appendChild(el("small", x.disabled ? "disabled: " + x.disabled : x.enabled ? "enabled" : x.configured ? "off" : "no longer configured"));
      var replay = el("button", "Replay dead and failed"); replay.type = "button"; replay.className = "replay";
      replay.disabled = !(x.dead || x.failed) && !x.disabled;
      replay.addEventListener("click", function () { askReplay(x); });
      head.appendChild(replay);
      card.appendChild(head);
      var figures = el("div", null, "figures");
      figures.appendChild(figure("delivered", x.delivered));
      figures.appendChild(figure("pending", (x.pending || 0) + (x.in_flight || 0)));
      figures.appendChild(figure("failed", x.failed, x.failed ? "bad" : ""));
      figures.appendChild(figure("dead", x.dead, x.dead ? "bad" : ""));
      card.appendChild(figures);
      card.appendChild(el("h3", "Deliveries per minute, last hour (delivered, failed, dead)"));
      card.appendChild(minuteChart(x.minutes, d.since));
      var axis = el("div", null, "axis"); axis.appendChild(el("span", epoch(d.since).slice(11, 16)));
      axis.appendChild(el("span", "now (most in a minute: " + Math.max.apply(null, [1].concat(x.minutes.delivered.map(function (v, i) {
        return v + x.minutes.failed[i] + x.minutes.dead[i]; }))) + ")"));
      card.appendChild(axis);
      if (x.dead_letters.length) {
        card.appendChild(el("h3", "Dead deliveries" + (x.dead > x.dead_letters.length ? " (the first " + x.dead_letters.length + " of " + x.dead + ")" : "")));
        var dead = el("table", null, "dead");
        x.dead_letters.forEach(function (letter) {
          var row = el("tr");
          row.appendChild(el("td", letter.id)); row.appendChild(el("td", epoch(letter.updated)));
          row.appendChild(el("td", letter.last_status === null ? "no answer" : "HTTP " + letter.last_status));
          row.appendChild(el("td", str(letter.last_answer || letter.last_error), "answer"));
          dead.appendChild(row);
        });
        card.appendChild(dead);
      }
      list.appendChild(card);
    });
  }

  function askReplay(x) {
    replaying = x.name;
    $("d-replayed").hidden = true;
    $("d-confirm-text").textContent = "Send again the " + (x.dead + x.failed).toLocaleString() + " dead and failed deliveries of " +
      x.name + ", from their first attempt" + (x.disabled ? ", and enable it again" : "") + "?";
    $("d-confirm").hidden = false;
  }
  $("d-confirm-no").addEventListener("click", function () { replaying = null; $("d-confirm").hidden = true; });
  $("d-confirm-yes").addEventListener("click", function () {
    var name = replaying; replaying = null; $("d-confirm").hidden = true;
    if (!name) return;
    fetch("/console/api/destinations/" + encodeURIComponent(name) + "/replay", { method: "POST", credentials: "same-origin" })
      .then(answer)
      .then(function (a) {
        if (!a.ok) { shown($("d-error"), apiError(a.status, a.body)); return; }
        shown($("d-replayed"), "Replayed " + a.body.replayed + " deliveries of " + name + (a.body.enabled_again ? "; enabled again." : "."));
      }, function () { shown($("d-error"), "the collector did not answer"); })
      .then(loadDestinations);
  });

  // --- journeys ---------------------------------------------------------------------------
  // Each journey: its steps in order with the people waiting at each (all versions), entered, active, exited, converted.
  function loadJourneys() {
    getJSON("/console/api/journeys").then(function (a) {
      shown($("j-error"), a[0] ? "" : a[1].message);
      if (a[0]) renderJourneys(a[1]);
    }, function () { shown($("j-error"), "the collector did not answer"); });
  }

  function renderJourneys(d) {
    var list = $("j-list"); list.textContent = "";
    $("j-empty").hidden = d.data.length > 0;
    shown($("j-problems"), d.problems.join("\n"));
    d.data.forEach(function (j) {
      var card = el("div", null, "card journey"); card.setAttribute("data-key", j.key);
      var head = el("h2", j.name); head.appendChild(el("small", j.key + (j.configured ? "" : " (no longer configured)")));
      card.appendChild(head);
      var figures = el("div", null, "figures");
      ["entered", "active", "exited", "converted", "completed"].forEach(function (k) { figures.appendChild(figure(k, j[k])); });
      card.appendChild(figures);
      var waiting = {};
      j.versions.forEach(function (v) { Object.keys(v.waiting).forEach(function (s) { waiting[s] = (waiting[s] || 0) + v.waiting[s]; }); });
      var steps = el("ol", null, "steps"), names = j.steps.slice();
      Object.keys(waiting).forEach(function (s) { if (names.indexOf(s) < 0) names.push(s); }); // steps of earlier versions
      names.forEach(function (s) {
        var item = el("li", s); item.setAttribute("data-step", s); item.appendChild(el("b", (waiting[s] || 0).toLocaleString()));
        item.title = (waiting[s] || 0) + " people at " + s; steps.appendChild(item);
      });
      card.appendChild(steps);
      list.appendChild(card);
    });
  }

  // --- privacy requests -------------------------------------------------------------------
  var ERASING = { DELETE_ONLY: true, SUPPRESS_WITH_DELETE: true };
  var PENDING = { INITIALIZED: true, RUNNING: true };
  var REFRESH = 1000; // ms between reloads of the list while a request is not finished
  var confirming = null; // the request waiting for its confirmation, as it was when filed

  function apiError(status, body) {
    return body && body.code ? body.code + ": " + body.message : "HTTP " + status;
  }
  function answer(r) {
    return r.text().then(function (text) {
      var body = null;
      try { body = JSON.parse(text); } catch (err) { body = null; }
      return { ok: r.ok, status: r.status, body: body };
    });
  }
  function showError(text) { $("r-error").hidden = !text; $("r-error").textContent = text || ""; }

  $("regulation").addEventListener("submit", function (e) {
    e.preventDefault();
    showError(""); $("r-filed").hidden = true;
    var ids = $("r-ids").value.split("\n").map(function (line) { return line.trim(); }).filter(Boolean);
    var request = { regulationType: $("r-type").value, subjectType: $("r-subject").value, subjectIds: ids };
    if (!ERASING[request.regulationType]) { file(request); return; }
    confirming = request;
    $("r-confirm-text").textContent = request.regulationType + " erases every stored event, dead letter and the profile of " +
      (ids.length === 1 ? "the " + request.subjectType + " " + ids[0] : ids.length + " " + request.subjectType + "s") +
      ", and of the identifiers linked to them. This cannot be undone.";
    $("r-confirm").hidden = false;
    $("r-file").disabled = true;
  });
  function endConfirm() { confirming = null; $("r-confirm").hidden = true; $("r-file").disabled = false; }
  $("r-confirm-yes").addEventListener("click", function () { var request = confirming; endConfirm(); if (request) file(request); });
  $("r-confirm-no").addEventListener("click", endConfirm);

  function file(request) {
    $("r-file").disabled = true;
    fetch("/console/api/regulations", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(request) })
      .then(answer)
      .then(function (a) {
        if (!a.ok) { showError(apiError(a.status, a.body)); return; }
        $("r-filed").hidden = false; $("r-filed").textContent = "Filed " + a.body.regulateId + ".";
        $("r-ids").value = "";
      }, function () { showError("the collector did not answer"); })
      .then(function () { $("r-file").disabled = false; loadRegulations(); });
  }

  function loadRegulations() {
    clearTimeout(regulationsTimer); regulationsTimer = null;
    fetch("/console/api/regulations", { credentials: "same-origin" })
      .then(answer)
      .then(function (a) {
        if (!a.ok) { showError(apiError(a.status, a.body)); return; }
        renderRegulations(a.body.data);
        if ($("privacy").hidden) return;
        if (a.body.data.some(function (r) { return PENDING[r.status]; })) regulationsTimer = setTimeout(loadRegulations, REFRESH);
      }, function () { if (!$("privacy").hidden) regulationsTimer = setTimeout(loadRegulations, REFRESH * 5); });
  }

  function when(iso) { return iso ? str(iso).slice(0, 19).replace("T", " ") : ""; }

  function countsOf(record) {
    var cell = el("td", null, "counts");
    if (record.identifiers) cell.appendChild(el("div", "identifiers " + record.identifiers));
    Object.keys(record.stores || {}).forEach(function (name) {
      var stats = record.stores[name], parts = [];
      Object.keys(stats).forEach(function (k) {
        if (k === "errors") { if (stats.errors.length) parts.push("errors " + stats.errors.length + " (" + str(stats.errors[0]) + ")"); }
        else parts.push(k + " " + str(stats[k]));
      });
      cell.appendChild(el("div", name + ": " + parts.join(", ")));
    });
    if (PENDING[record.status] && record.progress && record.progress.files) {
      cell.appendChild(el("div", "so far: " + record.progress.files + " files, " + record.progress.bytes + " bytes"));
    }
    cell.title = cell.textContent;
    return cell;
  }

  function renderRegulations(records) {
    var list = $("r-list"); list.textContent = "";
    $("r-empty").hidden = records.length > 0;
    records.slice().reverse().forEach(function (r) {
      var row = el("tr");
      row.setAttribute("data-status", str(r.status));
      row.appendChild(el("td", r.regulateId, "id"));
      row.appendChild(el("td", r.regulationType, "type"));
      row.appendChild(el("td", r.subjects + " " + r.subjectType));
      row.appendChild(el("td", r.status, "status"));
      row.appendChild(el("td", when(r.createdAt)));
      row.appendChild(el("td", when(r.finishedAt)));
      row.appendChild(countsOf(r));
      list.appendChild(row);
    });
  }

  connect();
})();
