// The script of `matviews report --html`: sorting and filtering of the
// overview, the charts (uPlot, inlined before this script), and the
// dependency graph when Graphviz did not draw it. It reads its data from the
// JSON block #report-data and writes text only through textContent.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var arr = function (x) { return Array.isArray(x) ? x : []; };

  // ---- overview: sort by a column, filter by name ----
  var table = document.getElementById("overview-table");
  var tbody = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;

  function sortBy(col) {
    var th = headers[col];
    var asc = th.getAttribute("aria-sort") !== "ascending";
    var num = th.getAttribute("data-type") === "num";
    for (var i = 0; i < headers.length; i++) headers[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
      var c = num ? (parseFloat(x) - parseFloat(y)) : x.localeCompare(y);
      if (c === 0) c = a.getAttribute("data-view").localeCompare(b.getAttribute("data-view"));
      return asc ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  Array.prototype.forEach.call(headers, function (th, i) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(i); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(i); } });
  });

  var filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  function applyFilter() {
    var q = filter.value.trim().toLowerCase();
    var n = 0;
    Array.prototype.forEach.call(tbody.rows, function (r) {
      var hit = r.getAttribute("data-view").toLowerCase().indexOf(q) >= 0;
      r.hidden = !hit;
      if (hit) n++;
    });
    Array.prototype.forEach.call(document.querySelectorAll("article.view"), function (a) {
      a.hidden = a.getAttribute("data-view").toLowerCase().indexOf(q) < 0;
    });
    shown.textContent = q ? (n + " of " + tbody.rows.length + " views") : (tbody.rows.length + " views");
  }
  filter.addEventListener("input", applyFilter);

  // ---- charts ----
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function fmtTime(t) { return new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"); }
  function fmtMs(v) { return v == null ? "-" : (v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(1) + " s"); }
  function fmtPeriod(s) { return s >= 86400 ? (s / 86400) + " d" : s >= 3600 ? (s / 3600) + " h" : (s / 60) + " min"; }
  function utc(ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); }

  function axes(unit) {
    var fg = css("--muted"), grid = css("--line");
    return [
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 70,
        values: function (u, vals) { return vals.map(function (v) { return unit === "ms" ? fmtMs(v) : String(v); }); } },
    ];
  }
  function dots(color, size) { return { show: true, size: size, stroke: color, fill: color }; }
  var noLine = function () { return null; };

  // The uPlot options and data of one chart of view v (kind "duration" or "rows").
  function chartSpec(v, kind) {
    var p = v.points || {}, t = arr(p.t), ms = arr(p.ms), rows = arr(p.rows);
    var accent = css("--accent"), bad = css("--bad"), muted = css("--muted");
    if (kind === "rows") {
      return { data: [t, rows.map(function (x) { return x == null ? null : x; })], unit: "rows",
        series: [{}, { label: p.mode === "buckets" ? "rows (max)" : "rows", stroke: accent, width: 1.5, spanGaps: true,
          points: dots(accent, t.length > 200 ? 0 : 4) }] };
    }
    if (p.mode === "buckets") {
      var fms = arr(p.failed_ms);
      return { data: [t, ms, arr(p.max_ms), fms], unit: "ms",
        series: [{}, { label: "average", stroke: accent, width: 1.5, spanGaps: true, points: { show: false } },
          { label: "max", stroke: muted, width: 1, dash: [4, 3], spanGaps: true, points: { show: false } },
          { label: "failed", stroke: bad, paths: noLine, points: dots(bad, 7) }] };
    }
    var st = arr(p.status);
    var ok = ms.map(function (x, i) { return st[i] === "failed" ? null : x; });
    var failed = ms.map(function (x, i) { return st[i] === "failed" ? (x == null ? 0 : x) : null; });
    return { data: [t, ok, failed], unit: "ms",
      series: [{}, { label: "success", stroke: accent, width: 1, spanGaps: true, points: dots(accent, t.length > 300 ? 3 : 5) },
        { label: "failed", stroke: bad, paths: noLine, points: dots(bad, 8) }] };
  }

  // The hover line under a chart for point i.
  function hoverText(v, kind, i) {
    var p = v.points || {};
    if (i == null || i < 0 || arr(p.t)[i] == null) return "";
    if (p.mode === "buckets") {
      return arr(p.n)[i] + " runs from " + fmtTime(p.t[i]) + " (" + fmtPeriod(p.bucket_s) + ")" +
        " · average " + fmtMs(arr(p.ms)[i]) + " · max " + fmtMs(arr(p.max_ms)[i]) +
        " · " + arr(p.failed)[i] + " failed" + " · rows " + (arr(p.rows)[i] == null ? "-" : p.rows[i]);
    }
    return "run " + arr(p.id)[i] + " · " + arr(p.status)[i] + " · " + fmtMs(arr(p.ms)[i]) +
      " · " + (arr(p.rows)[i] == null ? "-" : p.rows[i]) + (arr(p.rows)[i] === 1 ? " row · " : " rows · ") + fmtTime(p.t[i]);
  }

  var charts = [];
  function build(el) {
    var v = data.views[parseInt(el.getAttribute("data-index"), 10) - 1];
    var kind = el.getAttribute("data-chart");
    var spec = chartSpec(v, kind);
    var hover = el.parentNode.querySelector(".hover");
    var width = Math.max(240, el.clientWidth || el.parentNode.clientWidth || 320);
    var u = new uPlot({
      width: width, height: 180, series: spec.series, axes: axes(spec.unit), tzDate: utc,
      scales: { x: { time: true } }, legend: { show: true, live: false },
      cursor: { points: { size: 8 }, drag: { x: false, y: false } },
      hooks: { setCursor: [function (u) { hover.textContent = hoverText(v, kind, u.cursor.idx); }] },
    }, spec.data, el);
    charts.push({ u: u, el: el });
  }
  function buildAll() {
    charts.forEach(function (c) { c.u.destroy(); });
    charts = [];
    Array.prototype.forEach.call(document.querySelectorAll(".chart"), build);
  }
  buildAll();
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      charts.forEach(function (c) { c.u.setSize({ width: Math.max(240, c.el.clientWidth), height: 180 }); });
    }, 100);
  });
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    if (mq.addEventListener) mq.addEventListener("change", buildAll);
  }

  // ---- the dependency graph, drawn here when Graphviz did not ----
  var canvas = document.getElementById("graph-canvas");
  if (canvas) drawGraph(canvas);

  function drawGraph(box) {
    var NS = "http://www.w3.org/2000/svg";
    var status = {}, layer = {}, up = {};
    data.views.forEach(function (v) { status[v.name] = v.status; up[v.name] = []; });
    arr(data.edges).forEach(function (e) { if (up[e.to]) up[e.to].push(e.from); });
    var order = arr(data.order);
    order.forEach(function (n) {
      layer[n] = 0;
      up[n].forEach(function (m) { if (layer[m] != null) layer[n] = Math.max(layer[n], layer[m] + 1); });
    });
    var cols = [];
    order.forEach(function (n) { (cols[layer[n]] = cols[layer[n]] || []).push(n); });
    var W = 170, H = 34, GX = 60, GY = 16, pos = {}, rowsMax = 0;
    cols.forEach(function (col, x) {
      col.forEach(function (n, y) { pos[n] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) }; });
      rowsMax = Math.max(rowsMax, col.length);
    });
    var svg = document.createElementNS(NS, "svg");
    var w = 20 + cols.length * (W + GX) - GX, h = 20 + rowsMax * (H + GY) - GY;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("width", w);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "dependency graph");
    var fill = { success: "#7fd18b", failed: "#f08a8a", running: "#f3cd6b", pending: "#c9c9c9" };
    function el(tag, attrs, parent) {
      var e = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      parent.appendChild(e);
      return e;
    }
    var defs = el("defs", {}, svg);
    var m = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: css("--muted") }, m);
    arr(data.edges).forEach(function (e) {
      var a = pos[e.from], b = pos[e.to];
      if (!a || !b) return;
      var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      el("path", { d: "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2,
        fill: "none", stroke: css("--muted"), "stroke-width": 1.5, "marker-end": "url(#arrow)",
        "stroke-dasharray": e.declared ? "5,4" : "none" }, svg);
    });
    order.forEach(function (n) {
      var p = pos[n];
      var g = el("g", {}, svg);
      el("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6, fill: fill[status[n]] || "#e0e0e0", stroke: "#888" }, g);
      var t = el("text", { x: p.x + W / 2, y: p.y + H / 2 + 4, "text-anchor": "middle", "font-size": 12, fill: "#111" }, g);
      t.textContent = n.length > 24 ? n.slice(0, 23) + "…" : n;
      var title = el("title", {}, g);
      title.textContent = n + ": " + (status[n] || "no run");
    });
    box.appendChild(svg);
  }
})();
