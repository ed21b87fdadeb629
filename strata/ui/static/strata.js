// Strata UI: MLflow link redirects, htmx settings, metric charts (uPlot).
// No build step; served as is. Charts get server-downsampled data (LTTB), so a
// 100,000-step metric arrives as ~1,000 points; zooming asks the server for the
// zoomed range at full resolution.
(function () {
  "use strict";

  // MLflow's UI links (/#/experiments/1/runs/abc): the fragment never reaches the server.
  function mlflowTarget(hash) {
    var parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
    if (parts[0] !== "experiments" || parts.length < 2) return null;
    if (parts[2] === "runs" && parts[3]) return "/runs/" + encodeURIComponent(parts[3]);
    return "/experiments/" + encodeURIComponent(parts[1]);
  }
  var target = mlflowTarget(window.location.hash || "");
  if (target) {
    window.location.replace(target);
    return;
  }
  window.addEventListener("hashchange", function () {
    var moved = mlflowTarget(window.location.hash || "");
    if (moved) window.location.replace(moved);
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      // A 400 (a filter the grammar rejects) carries the inline error: swap it in.
      htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "400", swap: true, error: false },
        { code: "[45]..", swap: false, error: true },
      ];
    }
    initCharts(document);
  });

  var SERIES_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
    "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
  var charts = [];

  function controls() {
    var log = document.querySelector("[data-ctl=log]");
    var smooth = document.querySelector("[data-ctl=smooth]");
    return { log: !!(log && log.checked), smooth: smooth ? parseFloat(smooth.value) : 0 };
  }

  // Exponential moving average, skipping gaps (null) like TensorBoard's smoothing.
  function smoothed(ys, weight) {
    if (!weight) return ys;
    var out = new Array(ys.length), last = null;
    for (var i = 0; i < ys.length; i++) {
      var v = ys[i];
      if (v === null || v === undefined) { out[i] = null; continue; }
      last = last === null ? v : last * weight + (1 - weight) * v;
      out[i] = last;
    }
    return out;
  }

  // Tick labels with enough digits to tell neighbouring ticks apart.
  function fmt(v) {
    if (v === null || v === undefined) return "";
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function positive(ys) {
    return ys.map(function (v) { return v !== null && v > 0 ? v : null; });
  }

  function toPlotData(raw, ctl) {
    var ys = raw.overlay ? raw.series.map(function (s) { return s.y; }) : [raw.y];
    ys = ys.map(function (y) {
      var s = smoothed(y, ctl.smooth);
      return ctl.log ? positive(s) : s;
    });
    return [raw.x].concat(ys);
  }

  function draw(chart) {
    var ctl = controls();
    var el = chart.el, raw = chart.raw;
    if (chart.plot) chart.plot.destroy();
    var names = raw.overlay ? raw.series.map(function (s) { return s.name; }) : [el.dataset.title];
    var series = [{ label: "step" }].concat(names.map(function (name, i) {
      return {
        label: name,
        stroke: SERIES_COLORS[i % SERIES_COLORS.length],
        width: 1.5,
        spanGaps: true,
        points: { show: raw.x.length < 60 },
      };
    }));
    var width = Math.max(el.clientWidth - 8, 280);
    var opts = {
      width: width,
      height: 220,
      series: series,
      scales: { x: { time: false }, y: { distr: ctl.log ? 3 : 1 } },
      axes: [{ label: "step" }, { values: function (u, splits) { return splits.map(fmt); }, size: 60 }],
      cursor: { drag: { x: true, y: false } },
      legend: { show: raw.overlay || false },
      hooks: {
        setSelect: [function (u) {
          if (u.select.width < 2) return;
          var lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          zoom(chart, Math.floor(lo), Math.ceil(hi));
        }],
      },
    };
    var holder = el.querySelector(".plot");
    if (!holder) {
      holder = document.createElement("div");
      holder.className = "plot";
      el.appendChild(holder);
      holder.addEventListener("dblclick", function () { zoom(chart, null, null); });
    }
    chart.plot = new uPlot(opts, toPlotData(raw, ctl), holder);
    var finite = raw.x.length;
    el.dataset.points = String(finite);
    el.dataset.range = finite ? raw.x[0] + ":" + raw.x[finite - 1] : "";
    var note = el.querySelector(".note");
    if (!note) { note = document.createElement("p"); note.className = "note dim"; el.appendChild(note); }
    var text = finite + " points drawn";
    if (raw.total && raw.total > finite) text += " of " + raw.total + " (downsampled on the server)";
    if (raw.non_finite) text += "; " + raw.non_finite + " NaN/inf values not drawn";
    note.textContent = text;
  }

  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) return r.json().then(function (e) { throw new Error(e.message || r.statusText); });
        return r.json();
      });
  }

  function load(chart, url) {
    chart.el.dataset.state = "loading";
    return fetchJson(url).then(function (data) {
      data.overlay = !!chart.el.dataset.overlay;
      chart.raw = data;
      draw(chart);
      chart.el.dataset.state = "ready";
    }).catch(function (err) {
      chart.el.dataset.state = "error";
      var p = document.createElement("p");
      p.className = "error";
      p.textContent = "Could not load the chart: " + err.message;
      chart.el.appendChild(p);
    });
  }

  function zoom(chart, lo, hi) {
    var url = chart.el.dataset.chart;
    if (lo !== null) url += "&lo=" + lo + "&hi=" + hi;
    chart.zoomed = lo !== null;
    load(chart, url);
  }

  function initCharts(root) {
    var els = root.querySelectorAll("[data-chart]");
    if (!els.length || !window.uPlot) return;
    var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (!entry.isIntersecting) return;
        observer.unobserve(entry.target);
        var chart = { el: entry.target };
        charts.push(chart);
        load(chart, entry.target.dataset.chart);
      });
    }, { rootMargin: "200px" }) : null;
    els.forEach(function (el) {
      if (observer) observer.observe(el);
      else { var chart = { el: el }; charts.push(chart); load(chart, el.dataset.chart); }
    });
    document.querySelectorAll("[data-ctl]").forEach(function (input) {
      input.addEventListener("input", function () {
        charts.forEach(function (c) { if (c.raw) draw(c); });
      });
    });
  }
})();
