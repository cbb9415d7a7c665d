// The leaf/flower network: sliders in, every weight on its edge, every weighted sum, the
// winner; "train one step" shows each weight's gradient and how it moved.
import { api, el, fmt, showError } from "./ui.js";

let start = null, weights = null, lastStep = null;
const RANGES = [[0, 255, 1], [0, 255, 1], [0, 255, 1], [0, 100, 0.5]];

export async function setupLeaf() {
  start = await api("/api/leaf-flower");
  weights = start.weights;
  const code = start.code;
  document.getElementById("leaf-code").textContent = `${code.network}; loss: ${code.loss}; ${code.step}`;
  const box = document.getElementById("leaf-inputs"), first = start.examples[0].inputs;
  document.getElementById("leaf-panel").insertBefore(el("p", { class: "muted", text: `Inputs: ${start.task.inputs.join(", ")}. The network reads each divided by its scale (${start.task.scales.join(", ")}). ${start.task.rule}.` }), box.parentNode);
  box.replaceChildren();
  start.task.inputs.forEach((name, i) => {
    const [min, max, step] = RANGES[i];
    const input = el("input", { type: "range", min, max, step, value: first[i], id: `leaf-${i}`, "aria-label": name });
    const value = el("output", { text: first[i] });
    input.addEventListener("input", () => { value.textContent = input.value; update(); });
    box.append(el("label", {}, `${name}${start.task.units[i]} `, value, input));
  });
  box.append(el("label", {}, el("span", { class: "swatch", id: "leaf-swatch" }), " the colour"));
  document.getElementById("leaf-step").addEventListener("click", trainStep);
  document.getElementById("leaf-reset").addEventListener("click", () => { weights = start.weights; lastStep = null; status(""); update(); });
  await update();
}

function inputs() { return start.task.inputs.map((_, i) => Number(document.getElementById(`leaf-${i}`).value)); }
function status(text) { document.getElementById("leaf-status").textContent = text; }

let pending = 0;
async function update() {
  const x = inputs(), ticket = ++pending;
  document.getElementById("leaf-swatch").style.background = `rgb(${x[0]},${x[1]},${x[2]})`;
  try {
    const result = await api("/api/leaf-flower/forward", { inputs: x, weights });
    if (ticket === pending) draw(result);
  } catch (error) { showError(error.message); }
}

async function trainStep() {
  const button = document.getElementById("leaf-step");
  button.disabled = true;  // one step at a time: each starts from the last one's weights
  try {
    lastStep = await api("/api/leaf-flower/step", { weights });
    weights = lastStep.weights;
    status(`one step on the training examples: loss ${fmt(lastStep.loss)} → ${fmt(lastStep.loss_after)}, held-out accuracy ${(100 * lastStep.accuracy).toFixed(1)}%`);
    await update();
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
}

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// an edge: its colour and width from the weight; the weight (and, after a step, its
// gradient below it) at `at` along it: a column of labels per target neuron
function edge(root, [x1, y1], [x2, y2], w, grad, at) {
  const color = w >= 0 ? "#b2182b" : "#2166ac", width = 0.8 + 3 * Math.min(1, Math.abs(w));
  root.append(svg("line", { x1, y1, x2, y2, stroke: color, "stroke-width": width, opacity: 0.75 }));
  const x = x1 + (x2 - x1) * at, y = y1 + (y2 - y1) * at - 4;
  const label = svg("text", { x, y, class: "w", "font-size": 11, "text-anchor": "middle", fill: color,
    stroke: "#fff", "stroke-width": 3, "paint-order": "stroke" }, fmt(w));
  if (grad !== undefined) {
    label.append(svg("tspan", { x, dy: 10, "font-size": 9 }, `∇ ${fmt(grad)}`));
    label.append(svg("tspan", { x, dy: 10, "font-size": 9 }, `Δ ${fmt(-lastStep.lr * grad)}`));
  }
  root.append(label);
}

function node(root, [x, y], title, lines, highlight = false) {
  root.append(svg("circle", { cx: x, cy: y, r: 26, fill: highlight ? "#efe4fb" : "#fff", stroke: highlight ? "#6a3d9a" : "#888", "stroke-width": highlight ? 3 : 1 }));
  root.append(svg("text", { x, y: y - 4, "text-anchor": "middle", "font-size": 12, "font-weight": 600 }, title));
  lines.forEach((line, i) => root.append(svg("text", { x, y: y + 10 + 12 * i, "text-anchor": "middle", "font-size": 10 }, line)));
}

function draw(r) {
  const W = 790, H = 345, inX = 60, hidX = 440, outX = 720;
  const inY = [45, 125, 205, 285], hidY = [60, 170, 280], outY = [115, 225];
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "the leaf or flower network" });
  const g = lastStep ? lastStep.gradients : null, w = weights;
  inY.forEach((y, i) => hidY.forEach((hy, j) => edge(root, [inX, y], [hidX, hy], w["hidden.weight"][i][j], g ? g["hidden.weight"][i][j] : undefined, [0.18, 0.38, 0.56][j])));
  hidY.forEach((y, j) => outY.forEach((oy, k) => edge(root, [hidX, y], [outX, oy], w["output.weight"][j][k], g ? g["output.weight"][j][k] : undefined, [0.32, 0.66][k])));
  start.task.inputs.forEach((name, i) => node(root, [inX, inY[i]], name, [`${r.raw[i]} → ${fmt(r.scaled[i])}`]));
  hidY.forEach((y, j) => node(root, [hidX, y], `hidden ${j + 1}`, [`sum ${fmt(r.hidden_sums[j])}`, `tanh ${fmt(r.hidden[j])}`, `bias ${fmt(w["hidden.bias"][j])}`]));
  outY.forEach((y, k) => node(root, [outX, y], start.task.outputs[k], [`sum ${fmt(r.outputs[k])}`, `bias ${fmt(w["output.bias"][k])}`], k === r.winner));
  root.append(svg("text", { x: outX, y: 315, "text-anchor": "middle", "font-size": 14, "font-weight": 600, id: "leaf-answer" }, `→ ${r.answer}`));
  const legend = el("p", { class: "muted", text: "Red edges: positive weights, blue: negative, thicker: larger. Each neuron shows its weighted sum (inputs × weights + bias)" + (g ? "; ∇ is each weight's gradient in the last step, Δ how it moved (−learning rate × ∇)." : ".") });
  const answer = el("p", { id: "leaf-winner", "data-winner": r.winner, text: `The larger output wins: ${r.answer} (${start.task.outputs.map((o, k) => `${o} ${fmt(r.outputs[k])}`).join(" vs ")})` });
  document.getElementById("leaf-net").replaceChildren(root, answer, legend);
}
