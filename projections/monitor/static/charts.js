// ecpds monitor charts: draws the chart area's four charts with uPlot (served from
// /static/vendor/, installed by npm at install time) from /api/v1/charts, and fetches them
// again on every live change (at most once every five seconds) and each minute, as the range
// slides. Values arrive already in the unit named beside them; times are UTC.
(function () {
  "use strict";
  var area = document.querySelector("[data-charts]");
  if (!area) { return; }
  var missing = area.querySelector(".missing");
  if (!window.uPlot) { missing.hidden = false; return; }
  var uPlot = window.uPlot;
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                 "#17becf", "#7f7f7f"];
  var plots = {}, pending = false, last = 0;
  var stepped = uPlot.paths.stepped({ align: 1 });

  function number(v) {
    if (v === null || v === undefined) { return "–"; }
    var a = Math.abs(v);
    return a >= 100 || a === 0 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function tick(v) { return String(+v.toPrecision(3)); }

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }

  function two(n) { return n < 10 ? "0" + n : String(n); }

  // a time tick in UTC: the hour and minute, with the day when the range spans days
  function clock(ts, days) {
    var d = new Date(ts * 1e3), hm = two(d.getUTCHours()) + ":" + two(d.getUTCMinutes());
    return days ? two(d.getUTCMonth() + 1) + "-" + two(d.getUTCDate()) + " " + hm : hm;
  }

  // the canvas is not read by screen readers (nor by tests): the axes as drawn, in words
  function describe(holder, title, unit, xs, ys) {
    if (!xs.length || !ys.length) { return; }
    holder.setAttribute("role", "img");
    holder.setAttribute("aria-label", title + ": time " + xs[0] + " to " + xs[xs.length - 1] +
      " UTC; " + ys[0] + " to " + ys[ys.length - 1] + " " + unit);
  }

  function options(chart, width, days, holder, title) {
    var drawn = { x: [], y: [] };
    var series = [{ label: "time (UTC)" }];
    chart.series.forEach(function (s, i) {
      // a latency has gaps (no delivery, nothing measured): points show lone buckets; rates
      // and counts are per bucket, drawn as steps
      var gaps = s.values.indexOf(null) >= 0;
      series.push({
        label: s.label,
        stroke: COLOURS[i % COLOURS.length],
        width: 1.5,
        spanGaps: false,
        points: { show: gaps, size: 6 },
        paths: gaps ? undefined : stepped,
        value: function (u, v) { return number(v) + " " + chart.unit; }
      });
    });
    return {
      width: width,
      height: 220,
      tzDate: utc,
      scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.1 : 1]; } } },
      axes: [
        { label: "time (UTC)", labelSize: 20, size: 40,
          values: function (u, ticks) {
            drawn.x = ticks.map(function (t) { return clock(t, days); });
            return drawn.x;
          } },
        { label: chart.unit, labelSize: 20, size: 60,
          values: function (u, ticks) { drawn.y = ticks.map(tick); return drawn.y; } }
      ],
      hooks: { draw: [function () { describe(holder, title, chart.unit, drawn.x, drawn.y); }] },
      legend: { live: true },
      series: series
    };
  }

  function draw(data) {
    data.charts.forEach(function (chart) {
      var figure = area.querySelector('[data-chart="' + chart.id + '"]');
      if (!figure) { return; }
      var holder = figure.querySelector(".plot"), empty = figure.querySelector(".empty");
      figure.querySelector(".unit").textContent = "(" + chart.unit + ")";
      // a plot is kept (and only its data set) while its unit, series and their gaps are
      var key = chart.unit + "\n" + chart.series.map(function (s) {
        return s.label + (s.values.indexOf(null) >= 0 ? " (gaps)" : "");
      }).join("\n");
      var rows = [data.x].concat(chart.series.map(function (s) { return s.values; }));
      var known = plots[chart.id];
      empty.hidden = chart.series.length > 0;
      if (known && known.key === key) { known.plot.setData(rows); return; }
      if (known) { known.plot.destroy(); delete plots[chart.id]; }
      if (!chart.series.length) { holder.removeAttribute("aria-label"); return; }
      var width = Math.max(holder.clientWidth || figure.clientWidth || 480, 320);
      var days = data.step >= 3600, title = figure.querySelector("figcaption").firstChild.textContent.trim();
      var plot = new uPlot(options(chart, width, days, holder, title), rows, holder);
      plots[chart.id] = { key: key, plot: plot };
    });
    area.setAttribute("data-drawn", data.until);
  }

  function load() {
    pending = true;
    fetch(area.getAttribute("data-charts"), { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (data) {
      if (data && data.charts) { draw(data); }
    }).finally(function () { pending = false; last = Date.now(); });
  }

  function soon() {
    if (pending) { return; }
    setTimeout(function () { if (!pending) { load(); } }, Math.max(0, 5000 - (Date.now() - last)));
  }

  document.addEventListener("ecpds:change", soon);
  setInterval(soon, 60000);
  window.addEventListener("resize", function () {
    Object.keys(plots).forEach(function (id) {
      var holder = area.querySelector('[data-chart="' + id + '"] .plot');
      plots[id].plot.setSize({ width: Math.max(holder.clientWidth, 320), height: 220 });
    });
  });
  load();
})();
