// The run's loss curves from its metrics.jsonl; polled while the run is still training.
import { api, el, fmt } from "./ui.js";

let records = [], timer = null;
const POLL_MS = 5000;

export async function setupRun() {
  const data = await api(`/api/metrics?since=${records.length}`);
  records = records.concat(data.records);
  document.getElementById("run-code").textContent = data.code || "chalklm/training/report.py MetricsLog";
  draw(data);
  clearTimeout(timer);
  if (data.training) timer = setTimeout(setupRun, POLL_MS);
}

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function draw(data) {
  const box = document.getElementById("curves");
  if (!records.length) {
    box.replaceChildren(el("p", { class: "muted", text: "No metrics.jsonl beside this checkpoint: nothing to draw." }));
    return;
  }
  const W = 900, H = 300, L = 50, R = 60, T = 10, B = 30;
  const steps = records.map(r => r.step), x0 = Math.min(...steps), x1 = Math.max(...steps, x0 + 1);
  const losses = records.flatMap(r => [r.train_loss, r.val_loss]).filter(v => v !== undefined);
  const y0 = Math.min(...losses), y1 = Math.max(...losses, y0 + 1e-6);
  const lrs = records.map(r => r.lr).filter(v => v !== undefined), lrTop = Math.max(...lrs, 1e-12);
  const X = s => L + (s - x0) / (x1 - x0) * (W - L - R), Y = v => T + (y1 - v) / (y1 - y0) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "loss curves" });
  root.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#ccc" }));
  const line = (key, color, scale = Y) => {
    const pts = records.filter(r => r[key] !== undefined).map(r => `${X(r.step).toFixed(1)},${scale(r[key]).toFixed(1)}`);
    if (pts.length) root.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": key === "val_loss" ? 2 : 1 }));
  };
  line("train_loss", "#6a3d9a"); line("val_loss", "#e08214");
  for (const r of records.filter(r => r.val_loss !== undefined)) {  // each evaluation, a dot
    root.append(svg("circle", { cx: X(r.step), cy: Y(r.val_loss), r: 3.5, fill: "#e08214" }));
  }
  line("lr", "#999", v => T + (1 - v / lrTop) * (H - T - B));
  [[y1, T + 10], [y0, H - B]].forEach(([v, y]) => root.append(svg("text", { x: L - 4, y, "text-anchor": "end", "font-size": 11 }, fmt(v))));
  root.append(svg("text", { x: W - R + 4, y: T + 10, "font-size": 11, fill: "#999" }, `lr ${fmt(lrTop)}`));
  [[x0, L], [x1, W - R]].forEach(([s, x]) => root.append(svg("text", { x, y: H - 10, "text-anchor": "middle", "font-size": 11 }, `step ${s}`)));
  const last = records[records.length - 1];
  box.replaceChildren(root, el("p", { class: "muted", text:
    `Purple: training loss; orange: validation loss; grey: learning rate (right scale). ${records.length} records, last at step ${last.step}` +
    (data.training ? " — the run is still training; this updates every 5 s." : ".") }));
}
