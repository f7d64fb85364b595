// The flag page's charts: one uPlot per figure, a series per variant, from .../series.
"use strict";
(function () {
  const COLORS = ["#1f5fbf", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285"];
  const pct = (v) => (v == null ? "–" : (v * 100).toFixed(1) + "%");
  const secs = (v) => (v == null ? "–" : v.toFixed(2) + " s");
  const num = (v) => (v == null ? "–" : String(Math.round(v * 100) / 100));
  const CHARTS = [
    { title: "Latency (P50 dashed, P95 solid; the line is the guardrail)", figures: ["p95", "p50"], fmt: secs, line: "slow_s" },
    { title: "Attempt errors", figures: ["errors"], fmt: pct },
    { title: "Fallbacks to stable", figures: ["fallbacks"], fmt: pct },
    { title: "Output tokens per call", figures: ["output_tokens"], fmt: num },
    { title: "Feedback score (1–5)", figures: ["feedback"], fmt: num },
    // Reviewers' scores, each in the step of the answer it scores (the legend adds n, how many);
    // sparse, so drawn as points too.
    { title: "Review score (1–5)", figures: ["review"], fmt: num, range: [1, 5], count: "review_count",
      points: true },
    { title: "Calls", figures: ["calls"], fmt: num },
  ];
  let plots = [];

  function chart(root, data, spec, width) {
    const names = Object.keys(data.variants);
    const series = [{}];
    const columns = [data.t];
    names.forEach((name, i) => {
      spec.figures.forEach((figure, j) => {
        const column = figure.startsWith("check:") ? data.variants[name].checks[figure.slice(6)] : data.variants[name][figure];
        const counts = spec.count ? data.variants[name][spec.count] : null;
        const s = { label: spec.figures.length > 1 ? name + " " + figure : name, stroke: COLORS[i % COLORS.length],
                    dash: j > 0 ? [6, 4] : undefined, width: 1.5, spanGaps: false,
                    value: (u, v, si, k) => spec.fmt(v) + (counts && k != null && counts[k] ? " (n=" + counts[k] + ")" : "") };
        if (spec.points) s.points = { show: true, size: 6 };
        series.push(s);
        columns.push(column);
      });
    });
    if (spec.line) {
      series.push({ label: "limit", stroke: "#b42318", dash: [2, 3], width: 1, value: (u, v) => spec.fmt(v) });
      columns.push(data.t.map(() => data[spec.line]));
    }
    if (columns.slice(1).every((c) => c.every((v) => v == null))) return; // nothing measured
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.figure = spec.figures.join(",");
    const h = document.createElement("h3");
    h.textContent = spec.title;
    box.appendChild(h);
    root.appendChild(box);
    const plot = new uPlot({ width: width, height: 180, series: series,
                             axes: [{}, { size: 70, values: (u, vals) => vals.map(spec.fmt),
                                          splits: spec.range ? () => [1, 2, 3, 4, 5] : undefined }],
                             scales: { x: { time: true, range: () => [data.from, data.to] },
                                       y: spec.range ? { range: () => spec.range }
                                          : spec.fmt === pct ? { range: (u, lo, hi) => [0, Math.max(hi || 0, 0.05) * 1.1] } : {} } },
                           columns, box);
    plots.push(plot);
  }

  async function draw(root, windowName) {
    const width = Math.max(320, Math.min(root.clientWidth || 900, 1200));
    // At most a point per pixel unless the page asks for a step (?step=).
    const step = root.dataset.step ? "&step=" + encodeURIComponent(root.dataset.step) : "&width=" + width;
    const response = await fetch(root.dataset.series + "?window=" + encodeURIComponent(windowName) + step,
                                 { credentials: "same-origin" });
    if (!response.ok) { root.textContent = "Could not load the measurements (" + response.status + ")."; return; }
    const data = await response.json();
    plots.forEach((p) => p.destroy());
    plots = [];
    root.replaceChildren();
    if (data.t.length === 0) { root.textContent = "No measurements in this window."; return; }
    const specs = CHARTS.slice();
    data.checks.forEach((c) => specs.splice(3, 0, { title: "Output check failing: " + c, figures: ["check:" + c], fmt: pct }));
    specs.forEach((spec) => chart(root, data, spec, width));
    root.dataset.points = String(data.t.length);
    root.dataset.ready = "1";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("charts");
    if (!root) return;
    const links = document.querySelectorAll(".windows a");
    links.forEach((a) => a.addEventListener("click", (event) => {
      event.preventDefault();
      links.forEach((b) => b.classList.toggle("on", b === a));
      draw(root, a.dataset.window);
    }));
    if (links.length) links[0].classList.add("on");
    draw(root, "1h");
    // Live: the short windows are redrawn every 15 s while the page is visible.
    setInterval(() => {
      const on = document.querySelector(".windows a.on");
      const name = on ? on.dataset.window : "1h";
      if (!document.hidden && (name === "1h" || name === "6h")) draw(root, name);
    }, 15000);
  });
})();
