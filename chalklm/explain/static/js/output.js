// The output panel: softmax bars for the next token, recomputed in the page as the
// controls move (the same steps as chalklm/generation/sampling.py probabilities), then
// "next token" (pick one, append it, run again) and "generate" (streamed by the server).
import { array, el, fmt, shown, showError } from "./ui.js";

const SHOWN = 12;  // bars drawn: the most likely candidates
let logits = [], vocab = [];

function softmax(scores) {
  const top = Math.max(...scores), e = scores.map(s => Math.exp(s - top)), sum = e.reduce((a, b) => a + b, 0);
  return e.map(v => v / sum);
}

export function controls() {
  const temperature = Number(document.getElementById("temperature").value);
  const k = Math.floor(Number(document.getElementById("top-k").value));
  const p = Number(document.getElementById("top-p").value);
  return { temperature, topK: k > 0 ? k : null, topP: p < 1 ? p : null };
}

// chances of every token, after temperature, top-k and top-p (greedy: the plain softmax)
export function chances(scores, { temperature, topK, topP }) {
  if (temperature === 0) return softmax(scores);
  let s = scores.map(v => v / temperature);
  if (topK !== null && topK < s.length) {  // keep the k highest scores
    const keep = new Set(s.map((_, i) => i).sort((x, y) => s[y] - s[x] || x - y).slice(0, topK));
    s = s.map((v, i) => (keep.has(i) ? v : -Infinity));
  }
  if (topP !== null) {
    const c = softmax(s), order = c.map((_, i) => i).sort((a, b) => c[b] - c[a] || a - b);
    let before = 0;
    for (const i of order) { if (before >= topP) s[i] = -Infinity; before += c[i]; }
  }
  return softmax(s);
}

export function showOutput(trace, info) {
  logits = trace.last_logits; vocab = info.vocab;
  document.getElementById("output-code").textContent = `${trace.output.ln_f.code}; ${trace.output.code}; softmax in the page`;
  drawBars();
  showEachPosition(trace);
}

// every position predicts its next token: the likeliest one under each token of the prompt
function showEachPosition(trace) {
  const out = trace.output, p = array(out.top_probs);
  const chips = trace.tokens.map((token, t) => el("span", {
    class: "chip", title: out.top_texts[t].map((x, k) => `${JSON.stringify(x)} ${(100 * p.data[t * p.shape[1] + k]).toFixed(1)}%`).join("\n") },
  el("span", { class: "t", text: shown(token) }),
  el("span", { class: "i", text: `→ ${shown(out.top_texts[t][0])}` }),
  el("span", { class: "i", text: `${(100 * p.data[t * p.shape[1]]).toFixed(0)}%` })));
  document.getElementById("each-position").replaceChildren(...chips);
}

export function drawBars() {
  const c = controls();
  document.getElementById("temperature-value").textContent = c.temperature.toFixed(2);
  document.getElementById("top-p-value").textContent = (c.topP ?? 1).toFixed(2);
  if (!logits.length) return;
  const p = chances(logits, c), order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b).slice(0, SHOWN);
  const top = p[order[0]] || 1;  // bar lengths relative to the likeliest; the text gives the chance
  const rows = order.map(i => [
    el("span", { class: "bar-label", text: shown(vocab[i]) }),
    el("div", { class: "bar", "data-id": i, "data-p": p[i], style: `width:${(100 * p[i] / top).toFixed(2)}%` }),
    el("span", { class: "bar-value", text: `${(100 * p[i]).toFixed(1)}%  (score ${fmt(logits[i])})` })]);
  const box = document.getElementById("bars");
  box.replaceChildren(...rows.flat());
  box.chances = p;  // every token's chance, for anyone checking that they add up to 1
}

// one id: the highest bar at temperature 0, else a draw from the bars
export function pick() {
  const c = controls(), p = chances(logits, c);
  if (c.temperature === 0) return p.indexOf(Math.max(...p));
  let u = Math.random(), i = 0;
  for (; i < p.length - 1; i++) { u -= p[i]; if (u < 0) break; }
  while (p[i] === 0) i--;  // never a token the controls removed
  return i;
}

export async function generate(prompt, engine, onDone) {
  const c = controls(), box = document.getElementById("generated");
  const body = { prompt, engine, max_new_tokens: Number(document.getElementById("gen-count").value) };
  if (c.temperature === 0) body.greedy = true; else body.temperature = c.temperature;
  if (c.topK) body.top_k = c.topK;
  if (c.topP) body.top_p = c.topP;
  const stop = document.getElementById("stop"), abort = new AbortController();
  stop.disabled = false; stop.onclick = () => abort.abort();
  box.replaceChildren(prompt);
  const fresh = el("span", { class: "new" });
  box.append(fresh);
  try {
    const response = await fetch("/api/generate", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: abort.signal });
    if (!response.ok) throw new Error((await response.json()).error);
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines.filter(Boolean)) {
        const item = JSON.parse(line);
        if (item.error) throw new Error(item.error);
        fresh.textContent += item.text;
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
  } finally {
    stop.disabled = true;
    onDone(box.textContent);
  }
}
