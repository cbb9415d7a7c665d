// Small helpers every panel uses: the API, arrays from the server, colours, heat maps, tooltips.

export async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `${response.status} from ${path}`);
  return data;
}

export function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// float16 numbers (how the API sends arrays; see chalklm/explain/encode.py) -> Float32Array
const HALF = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
    table[h] = e === 0 ? sign * f * 2 ** -24
      : e === 31 ? (f ? NaN : sign * Infinity) : sign * (1 + f / 1024) * 2 ** (e - 15);
  }
  return table;
})();

export function array(value) {
  if (Array.isArray(value)) {  // "lists" encoding: nested lists, null for -inf
    const shape = [];
    for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
    const flat = value.flat(Infinity).map(v => (v === null ? -Infinity : v));
    return { shape, data: Float32Array.from(flat) };
  }
  const bytes = atob(value.base64), n = bytes.length / 2, data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = HALF[bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8)];
  return { shape: value.shape, data };
}

// one 2-D slice of an array: slice(a, h) of shape (H, T, T) is head h's (T, T)
export function slice(a, index) {
  const [rows, cols] = a.shape.slice(-2), size = rows * cols;
  return { shape: [rows, cols], data: a.data.subarray(index * size, (index + 1) * size) };
}

// Colours: signed numbers blue (-) / white (0) / red (+); chances white -> purple.
export function diverging(v, max) {
  const t = Math.max(-1, Math.min(1, v / (max || 1)));
  const [r, g, b] = t >= 0 ? [178, 24, 43] : [33, 102, 172], a = Math.abs(t);
  return [255 + (r - 255) * a, 255 + (g - 255) * a, 255 + (b - 255) * a];
}
export function sequential(v) {
  const a = Math.sqrt(Math.max(0, Math.min(1, v)));
  return [255 + (63 - 255) * a, 255 + (0 - 255) * a, 255 + (125 - 255) * a];
}
const HIDDEN = [205, 205, 205];  // a masked cell: the token may not look there

export function maxAbs(data) {
  let m = 0;
  for (const v of data) if (Number.isFinite(v) && Math.abs(v) > m) m = Math.abs(v);
  return m || 1;
}

// A heat map: one canvas pixel per cell, scaled up by CSS. `describe(row, col, value)`
// gives the hover text. The canvas keeps its numbers (`cells`) for anyone to check.
export function heatmap({ a, kind = "signed", mask = null, describe, wide = false }) {
  const [rows, cols] = a.shape, canvas = el("canvas", { class: "map" });
  canvas.width = cols; canvas.height = rows;
  if (wide) {  // rows of numbers: cells as wide as 1200 px allow, at least 4 px tall
    const w = Math.max(2, Math.min(24, Math.floor(1200 / cols)));
    const h = rows <= 2 ? 14 : Math.max(4, Math.min(w, 24));
    canvas.style.width = `${cols * w}px`; canvas.style.height = `${rows * h}px`;
  }
  const max = kind === "signed" ? maxAbs(a.data) : 1;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const v = a.data[i];
    const rgb = mask && mask.data[i] > 0 ? HIDDEN : kind === "signed" ? diverging(v, max) : sequential(v);
    image.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
  canvas.cells = a; canvas.dataset.rows = rows; canvas.dataset.cols = cols;
  const cell = event => {
    const r = canvas.getBoundingClientRect();
    return [Math.floor((event.clientY - r.top) / r.height * rows), Math.floor((event.clientX - r.left) / r.width * cols)];
  };
  canvas.addEventListener("mousemove", event => {
    const [row, col] = cell(event);
    if (row < 0 || col < 0 || row >= rows || col >= cols) return hideTip();
    const hidden = mask && mask.data[row * cols + col] > 0;
    showTip(event, describe(row, col, a.data[row * cols + col], hidden));
  });
  canvas.addEventListener("mouseleave", hideTip);
  return { canvas, max };
}

export function legend(kind, max, note = "") {
  const canvas = el("canvas");
  canvas.width = 120; canvas.height = 1;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(120, 1);
  for (let x = 0; x < 120; x++) {
    const rgb = kind === "signed" ? diverging((x / 119) * 2 - 1, 1) : sequential(x / 119);
    image.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * x);
  }
  ctx.putImageData(image, 0, 0);
  const low = kind === "signed" ? `−${fmt(max)}` : "0", high = kind === "signed" ? `+${fmt(max)}` : "1";
  return el("div", { class: "legend" }, el("span", { text: low }), canvas, el("span", { text: high }),
    el("span", { text: note }));
}

// A figure: caption, heat map, legend.
export function figure(caption, options, note) {
  const { canvas, max } = heatmap({ wide: !options.mask, ...options });
  const fig = el("figure", {}, el("figcaption", { text: caption }), canvas,
    legend(options.kind || "signed", max, note || ""));
  return fig;
}

// a square heat map with its tokens along the top (keys) and the left (queries), when few
// enough to read (the tooltip names them always)
export function withTokens(fig, tokens, most = 16) {
  if (tokens.length > most) return fig;
  const canvas = fig.querySelector("canvas.map");
  const axis = (cls) => el("div", { class: `axis ${cls}` }, ...tokens.map(t => el("span", { text: shown(t) })));
  const grid = el("div", { class: "labelled" }, el("span"), axis("cols"), axis("rows"));
  canvas.replaceWith(grid);
  grid.append(canvas);
  return fig;
}

export function fmt(v) {
  if (v === -Infinity) return "−∞ (hidden)";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(3) : v.toPrecision(4);
}

// a token's text as a label: a space shows as ␣, a newline as \n
export function shown(text) {
  return JSON.stringify(text).slice(1, -1).replaceAll(" ", "␣");
}

const tip = () => document.getElementById("tip");
export function showTip(event, text) {
  const t = tip();
  t.textContent = text; t.hidden = false;
  t.style.left = `${Math.min(event.clientX + 12, window.innerWidth - t.offsetWidth - 4)}px`;
  t.style.top = `${event.clientY + 14}px`;
}
export function hideTip() { tip().hidden = true; }
