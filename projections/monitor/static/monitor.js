// ecpds monitor live updates: one EventSource on /live. The overview updates its rows in place
// from the pushed destination rows; other pages re-fetch their live region (?partial=1), at
// most once every two seconds, so a burst of events costs one request. Every change is also
// announced as an "ecpds:change" event on the document, which the charts (charts.js) follow.
(function () {
  "use strict";
  var region = document.getElementById("live");
  var dot = document.getElementById("live-state");
  if (!region || !dot || !window.EventSource) { return; }
  var pending = false, last = 0;

  function text(v) { return v === null || v === undefined ? "" : String(v); }
  function when(v) { return v ? v.replace("T", " ").slice(0, 19) : ""; }

  function updateRow(d) {
    var row = region.querySelector('tr[data-name="' + CSS.escape(d.name) + '"]');
    if (!row) { return; }
    var heads = region.querySelectorAll("thead th[data-col]");
    heads.forEach(function (th, i) {
      var col = th.getAttribute("data-col"), cell = row.cells[i];
      if (!cell || col === "name") { return; }
      if (col === "status") {
        var b = cell.querySelector(".badge");
        b.className = "badge " + d.colour; b.textContent = d.status_name; b.title = text(d.status);
        var note = cell.querySelector(".note");
        if (d.status_note && !note) {
          note = document.createElement("span"); note.className = "note"; cell.appendChild(note);
        }
        if (note) { note.textContent = text(d.status_note); }
      } else if (col === "last_error") {
        var said = cell.querySelector(".sentence"), code = cell.querySelector("code");
        if (said && code) { said.textContent = text(d.error_sentence); code.textContent = text(d.last_error); }
        else { cell.textContent = text(d.error_sentence); }
      } else if (cell.querySelector("a")) {
        cell.querySelector("a").textContent = text(d[col]);
      } else if (col === "health") {
        var h = cell.querySelector(".badge");
        h.className = "badge " + d.health_colour; h.textContent = d.health_name;
        h.title = text(d.health_reason); row.setAttribute("data-health", d.health);
      } else if (col.slice(-3) === "_at") {
        cell.textContent = when(d[col]);
      } else {
        cell.textContent = text(d[col]);
      }
    });
    row.classList.remove("changed"); void row.offsetWidth; row.classList.add("changed");
  }

  function refresh() {
    if (pending) { return; }
    var wait = Math.max(0, 2000 - (Date.now() - last));
    pending = true;
    setTimeout(function () {
      var url = new URL(window.location.href);
      url.searchParams.set("partial", "1");
      fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (r.ok && !r.redirected) { return r.text(); }
        return null;
      }).then(function (html) {
        if (html !== null) { region.innerHTML = html; }
      }).finally(function () { pending = false; last = Date.now(); });
    }, wait);
  }

  var source = new EventSource("/live");
  source.onopen = function () { dot.classList.add("on"); };
  source.onerror = function () { dot.classList.remove("on"); };
  source.addEventListener("change", function (e) {
    var change = JSON.parse(e.data);
    document.dispatchEvent(new CustomEvent("ecpds:change", { detail: change }));
    if (region.getAttribute("data-live") === "rows" && !change.reload) {
      change.destinations.forEach(updateRow);
    } else {
      refresh();
    }
  });
})();
