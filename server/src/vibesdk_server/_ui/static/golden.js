// The flag page's golden-set chart: one uPlot, per variant its daily score and 95% interval.
"use strict";
(function () {
  const COLORS = ["#1f5fbf", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285"];
  const MARKS = { rollout: "#b42318", document: "#6b7280", version: "#1f5fbf" };
  const num = (v) => (v == null ? "–" : v.toFixed(2));
  const noon = (day) => Date.parse(day + "T12:00:00Z") / 1000;

  function draw(root) {
    const data = JSON.parse(root.dataset.trend);
    const t = data.days.map(noon);
    const at = new Map(data.days.map((d, i) => [d, i]));
    const series = [{}];
    const columns = [t];
    const bands = [];
    data.variants.forEach((name, i) => {
      const color = COLORS[i % COLORS.length];
      const score = t.map(() => null), low = t.map(() => null), high = t.map(() => null);
      data.points.filter((p) => p.variant === name).forEach((p) => {
        const j = at.get(p.day);
        score[j] = p.score;
        low[j] = p.ci95 ? p.ci95[0] : p.score;
        high[j] = p.ci95 ? p.ci95[1] : p.score;
      });
      if (score.every((v) => v == null)) return;
      const base = series.length;
      series.push({ label: name, stroke: color, width: 2, points: { show: true }, value: (u, v) => num(v) });
      series.push({ label: name + " low", stroke: color, width: 0.5, dash: [4, 4], value: (u, v) => num(v) });
      series.push({ label: name + " high", stroke: color, width: 0.5, dash: [4, 4], value: (u, v) => num(v) });
      columns.push(score, low, high);
      bands.push({ series: [base + 2, base + 1], fill: color + "22" });
    });
    const marks = data.markers.map((m) => ({ x: Date.parse(m.at) / 1000, color: MARKS[m.kind] || "#6b7280" }));
    const span = t.length ? [t[0] - 86400, t[t.length - 1] + 86400] : [0, 1];
    const width = Math.max(320, Math.min(root.clientWidth || 900, 1200));
    new uPlot({
      width: width, height: 220, series: series, bands: bands,
      axes: [{}, { size: 50, values: (u, vals) => vals.map(num) }],
      scales: { x: { time: true, range: () => span }, y: { range: () => [0, 1.05] } },
      hooks: { draw: [(u) => {
        const ctx = u.ctx;
        marks.forEach((m) => {
          const x = Math.round(u.valToPos(m.x, "x", true));
          ctx.save();
          ctx.strokeStyle = m.color;
          ctx.setLineDash([3, 3]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.restore();
        });
      }] },
    }, columns, root);
    root.dataset.series = series.slice(1).map((s) => s.label).join(",");
    root.dataset.ready = "1";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("golden-chart");
    if (root) draw(root);
  });
})();
