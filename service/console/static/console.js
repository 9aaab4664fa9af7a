// carbon-points console: draws the charts whose data the page gives as JSON in each
// canvas's data-values attribute, on load and after each htmx swap. No inline script:
// the console's Content-Security-Policy allows scripts from its own files only.
(function () {
  "use strict";
  var palette = { green: "#1f7a4d", light: "#8cc7a5", amber: "#c98a00", red: "#b3261e", blue: "#2f6db5" };

  function data(canvas) {
    return canvas.dataset.values ? JSON.parse(canvas.dataset.values) : null;
  }

  // Counts and points are whole numbers: no 0.5 on their axes.
  function options() {
    return { animation: false, responsive: true, maintainAspectRatio: true, aspectRatio: 2,
             plugins: { legend: { position: "bottom" } },
             scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } };
  }

  var kinds = {
    reductions: function (canvas, d) {
      return { type: "bar", data: { labels: d.labels, datasets: [
        { label: canvas.dataset.label, data: d.grams.map(function (g) { return g / 1000; }),
          backgroundColor: palette.green } ] }, options: options() };
    },
    points: function (canvas, d) {
      var p = d;
      return { type: "bar", data: { labels: p.labels, datasets: [
        { type: "line", label: canvas.dataset.labelOutstanding, data: p.outstanding, borderColor: palette.green,
          backgroundColor: palette.green, tension: 0 },
        { label: canvas.dataset.labelIssued, data: p.issued, backgroundColor: palette.light },
        { label: canvas.dataset.labelRedeemed, data: p.redeemed, backgroundColor: palette.blue },
        { label: canvas.dataset.labelExpired, data: p.expired, backgroundColor: palette.amber } ] }, options: options() };
    },
    hours: function (canvas, d) {
      return { type: "bar", data: { labels: d.labels, datasets: [
        { label: canvas.dataset.labelEvents, data: d.events, backgroundColor: palette.green },
        { label: canvas.dataset.labelRejected, data: d.rejected, backgroundColor: palette.red } ] },
        options: options() };
    },
    backtest: function (canvas, d) {
      return { type: "bar", data: { labels: d.labels, datasets: [
        { label: canvas.dataset.labelBefore, data: d.points_in_force, backgroundColor: palette.light },
        { label: canvas.dataset.labelAfter, data: d.points_draft, backgroundColor: palette.green } ] },
        options: options() };
    }
  };

  function draw(root) {
    if (typeof Chart === "undefined") { return; }
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.rendered) { return; }
      var build = kinds[canvas.dataset.chart];
      var d = data(canvas);
      if (!build || !d) { return; }
      new Chart(canvas, build(canvas, d));
      canvas.dataset.rendered = "true";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
})();
