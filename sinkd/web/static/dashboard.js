// sinkd dashboard: live rows from /api/v1/events and the list's filters. No innerHTML: every
// value from a message is set as text, so captured mail cannot inject markup here.
(function () {
  "use strict";
  var filters = document.getElementById("filters");
  if (filters) {
    // Empty fields stay out of the URL: "/?verdict=quarantine", not "...&profile=&subject=".
    filters.addEventListener("submit", function () {
      Array.prototype.forEach.call(filters.elements, function (field) {
        if (field.name && !field.value) { field.disabled = true; }
      });
    });
    ["verdict-filter", "profile-filter"].forEach(function (id) {
      var select = document.getElementById(id);
      if (!select) { return; }
      select.addEventListener("change", function () {
        if (filters.requestSubmit) { filters.requestSubmit(); } else { filters.submit(); }
      });
    });
  }
  var table = document.getElementById("messages");
  if (!table || typeof EventSource === "undefined") { return; }
  var tbody = table.tBodies[0];
  var wanted = table.getAttribute("data-verdict") || "";
  var wantedProfile = table.getAttribute("data-profile") || "";
  var wantedSubject = (table.getAttribute("data-subject") || "").toLowerCase();
  // Below the newest page, new mail belongs to the newest page: count it, do not insert it
  // here (the server says which page this is; rows of an older page never move).
  var firstPage = table.getAttribute("data-newest") === "1";
  var fresh = 0;
  var live = document.getElementById("live");
  var total = document.getElementById("total");

  function setLive(state, text) {
    if (!live) { return; }
    live.setAttribute("data-state", state);
    live.textContent = text;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function link(href, text) {
    var a = el("a", null, text);
    a.setAttribute("href", href);
    return a;
  }

  function badge(m) {
    var td = el("td", "nowrap");
    var verdict = String(m.verdict || "");
    td.appendChild(el("span", "badge v-" + verdict.replace(/[^a-z]/g, ""), verdict));
    if (m.disposition === "tagged" || m.disposition === "junk") {
      td.appendChild(el("span", "marker", m.disposition));
    }
    if (m.stripped && m.stripped.length) { td.appendChild(el("span", "marker m-stripped", "stripped")); }
    return td;
  }

  function reason(m) {  // as deciding_reason() in dashboard.py
    var findings = m.findings || [];
    var stripped = [];
    for (var i = 0; i < findings.length; i++) {
      if (findings[i].decided) { return findings[i].reason; }
      if (findings[i].action === "strip") {
        var cls = (findings[i].detail || {})["class"] || findings[i].code || "";
        cls = String(cls).replace(/_/g, " ").toLowerCase();
        if (stripped.indexOf(cls) < 0) { stripped.push(cls); }
      }
    }
    if (m.stripped && m.stripped.length) {
      return "accepted after stripping " + (stripped.join(", ") || "content");
    }
    return "accepted";
  }

  function row(m) {
    var id = encodeURIComponent(String(m.id || ""));
    var env = m.envelope || {};
    var tr = el("tr", "fresh");
    tr.setAttribute("data-id", String(m.id || ""));
    tr.setAttribute("data-verdict", String(m.verdict || ""));
    tr.appendChild(badge(m));
    var subject = el("td");
    subject.appendChild(link("/messages/" + id, m.subject || "(no subject)"));
    tr.appendChild(subject);
    tr.appendChild(el("td", "addr", (env.mail_from || "<>") + " → " + ((env.rcpt_to || []).join(", ") || "—")));
    var profile = el("td");
    profile.appendChild(link("/profiles/" + encodeURIComponent(String(m.profile || "")), m.profile || ""));
    tr.appendChild(profile);
    tr.appendChild(el("td", "reason", reason(m)));
    tr.appendChild(el("td", "nowrap muted", String(m.received_at || "").slice(0, 19).replace("T", " ")));
    return tr;
  }

  var source = new EventSource("/api/v1/events");
  source.onopen = function () { setLive("open", "live"); };
  source.onerror = function () { setLive("retrying", "reconnecting…"); };
  source.addEventListener("verdict", function (event) {
    var m = JSON.parse(event.data);
    if (wanted && m.verdict !== wanted) { return; }
    if (wantedProfile && m.profile !== wantedProfile) { return; }
    if (wantedSubject && String(m.subject || "").toLowerCase().indexOf(wantedSubject) < 0) {
      return;
    }
    if (!firstPage) {
      fresh += 1;
      if (total) { total.textContent = String(Number(total.textContent || "0") + 1); }
      setLive("open", "live · " + fresh + " new on the first page");
      return;
    }
    var empty = tbody.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    tbody.insertBefore(row(m), tbody.firstChild);
    if (total) { total.textContent = String(Number(total.textContent || "0") + 1); }
  });
  source.addEventListener("released", function (event) {
    var m = JSON.parse(event.data);
    var rows = tbody.querySelectorAll("tr[data-id]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-id") === String(m.id)) {
        rows[i].cells[0].appendChild(el("span", "marker", "released"));
      }
    }
  });
})();

// The message page's Release button: the API's release (POST, JSON), then the page again, which
// shows the release and, with --relay, the relay line.
(function () {
  "use strict";
  var button = document.getElementById("release-button");
  if (!button || typeof fetch === "undefined") { return; }
  var error = document.getElementById("release-error");
  button.addEventListener("click", function () {
    button.disabled = true;
    var id = button.getAttribute("data-id");
    fetch("/api/v1/messages/" + encodeURIComponent(id) + "/release", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: "{}",
      credentials: "same-origin"
    }).then(function (response) {
      if (response.ok) { window.location.reload(); return null; }
      return response.json().then(function (body) {
        if (error) { error.textContent = " " + (body.detail || body.error || response.status); }
        button.disabled = false;
      });
    }).catch(function (failure) {
      if (error) { error.textContent = " " + failure; }
      button.disabled = false;
    });
  });
})();
