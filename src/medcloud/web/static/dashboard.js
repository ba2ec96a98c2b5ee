// Progressive enhancement only: every page works without this file. Live alarm changes refresh
// the ward overview (through htmx); a patient page draws its charts with uPlot and adds the
// points its live feed sends. No clinical rule lives here: the server decides what is shown.
(function () {
  "use strict";

  function wardLive() {
    var ward = document.getElementById("ward");
    if (!ward || !window.EventSource) return;
    var source = new EventSource(ward.getAttribute("data-live"));
    source.onerror = function () {
      // A refused stream (an expired session) is not retried by the browser: the next
      // refresh renews the session, then the stream is opened again.
      if (source.readyState === EventSource.CLOSED) setTimeout(wardLive, 15000);
    };
    var pending = null;
    function changed() {
      // Several changes in a burst cost one refresh.
      if (pending) return;
      pending = setTimeout(function () {
        pending = null;
        document.body.dispatchEvent(new Event("medcloud:alarm"));
      }, 300);
    }
    ["alert.raised", "alert.updated", "alert.acknowledged", "alert.silenced", "alert.resolved", "alert.escalated"].forEach(function (name) {
      source.addEventListener(name, changed);
    });
    source.onmessage = changed;
  }

  function chartWidth(el) {
    return Math.max(260, el.clientWidth - 4);
  }

  function patientCharts() {
    var dataEl = document.getElementById("chart-data");
    if (!dataEl || !window.uPlot) return;
    var data = JSON.parse(dataEl.textContent);
    var charts = {};
    data.series.forEach(function (s) {
      var figure = document.getElementById("chart-" + s.type);
      if (!figure) return;
      var plot = figure.querySelector(".plot");
      var xs = [], ys = [], lo = [], hi = [];
      s.points.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); lo.push(null); hi.push(null); });
      var seriesOpts = [{}, { label: s.label, stroke: "#0b4f9c", width: 2, spanGaps: true }];
      var cols = [xs, ys];
      if (s.forecast) {
        s.forecast.forEach(function (f) { xs.push(f[0]); ys.push(null); lo.push(f[1]); hi.push(f[3]); });
        cols = [xs, ys, lo, hi];
        seriesOpts.push({ label: "forecast lower", stroke: "#6b6f76", dash: [4, 4] });
        seriesOpts.push({ label: "forecast upper", stroke: "#6b6f76", dash: [4, 4] });
      }
      var opts = {
        width: chartWidth(figure), height: 200,
        series: seriesOpts,
        bands: s.forecast ? [{ series: [3, 2], fill: "rgba(11,79,156,0.12)" }] : [],
        axes: [{}, { label: s.unit }],
        legend: { show: false },
      };
      charts[s.type] = { plot: new uPlot(opts, cols, plot), cols: cols, figure: figure };
    });
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (k) {
        var c = charts[k];
        c.plot.setSize({ width: chartWidth(c.figure), height: 200 });
      });
    });
    var status = document.getElementById("live-status");
    if (!window.EventSource || !data.live) return;
    var source = new EventSource(data.live);
    source.onopen = function () { if (status) status.textContent = "Live."; };
    source.onerror = function () { if (status) status.textContent = "Live updates interrupted; retrying."; };
    source.addEventListener("ended", function () { source.close(); window.location.reload(); });
    source.addEventListener("reading", function (event) {
      var r = JSON.parse(event.data);
      r.at = Date.parse(r.timestamp) / 1000;
      var latest = document.querySelector('[data-latest="' + r.type + '"]');
      if (latest) latest.textContent = (Math.round(r.value * 10) / 10).toString();
      var c = charts[r.type];
      if (!c) return;
      // The point goes before any forecast points, which lie in the future.
      var i = c.cols[0].length;
      while (i > 0 && c.cols[0][i - 1] > r.at) i--;
      c.cols.forEach(function (col, n) { col.splice(i, 0, n === 0 ? r.at : n === 1 ? r.value : null); });
      c.plot.setData(c.cols);
      c.figure.setAttribute("data-points", String(c.cols[1].filter(function (v) { return v !== null; }).length));
      c.figure.setAttribute("data-last-live", String(r.value));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wardLive();
    patientCharts();
  });
})();
