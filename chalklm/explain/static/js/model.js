// The GPT panels: tokens, embeddings, every layer. All numbers come from one /api/forward.
import { array, el, figure, fmt, shown, slice, withTokens } from "./ui.js";

export function showTokens(trace, tokens, code) {
  document.getElementById("tokens-code").textContent = code;
  const box = document.getElementById("tokens"), merges = document.getElementById("merges");
  box.replaceChildren(); merges.replaceChildren();
  tokens.forEach((token, i) => {
    const chip = el("span", { class: "chip", title: `token ${i}: id ${token.id}` },
      el("span", { class: "t", text: shown(token.text) }), el("span", { class: "i", text: token.id }));
    if (token.merges && token.merges.parts) {
      chip.classList.add("bpe");
      chip.title += " (click: the merges that built it)";
      chip.addEventListener("click", () => merges.replaceChildren(
        el("p", { class: "muted", text: `How BPE built ${JSON.stringify(token.text)}: each line joins two tokens into one (merge number, new id).` }),
        el("div", { class: "tree" }, mergeTree(token.merges))));
    }
    box.append(chip);
  });
}

function mergeTree(node) {
  const label = node.parts ? `${JSON.stringify(node.text)} = id ${node.id}, merge ${node.merge}` : `${JSON.stringify(node.text)} = byte, id ${node.id}`;
  const item = el("li", { text: label });
  if (node.parts) item.append(el("ul", {}, ...node.parts.map(mergeTree)));
  return el("ul", {}, item);
}

const rowsAre = tokens => (row, col, v) => `token ${row} ${JSON.stringify(tokens[row])}, number ${col}: ${fmt(v)}`;

export function showEmbeddings(trace) {
  const e = trace.embedding, tokens = trace.tokens, describe = rowsAre(tokens);
  document.getElementById("embed-code").textContent = e.code;
  const rope = e.positional === "rope";
  const positionName = {
    learned: "position rows (learned: PositionalEmbedding)",
    sinusoidal: "position rows (sinusoidal: PositionalEncoding, not trained)",
    rope: "rotary angles (RoPE): cos, then sin, for each pair of a head's numbers; they turn every layer's queries and keys, nothing is added here",
  }[e.positional];
  document.getElementById("embeds").replaceChildren(
    el("div", { class: "wide" }, figure("token embedding rows (token_embedding[id])", { a: array(e.token), describe })),
    el("div", { class: "wide" }, figure(positionName, { a: array(e.position), describe: (r, c, v) => `position ${r}, number ${c}: ${fmt(v)}` })),
    el("div", { class: "wide" }, figure(rope ? "what the first layer reads: the token rows alone" : "their sum: what the first layer reads", { a: array(e.sum), describe })));
}

export function showLayers(trace) {
  const layers = trace.layers, box = document.getElementById("layers");
  document.getElementById("layers-code").textContent = layers.length ? layers[0].code : "";
  showStreamSize(trace);
  box.replaceChildren();
  layers.forEach((layer, i) => {
    const details = el("details", { class: "layer", "data-layer": i }, el("summary", { text: `Layer ${i + 1} of ${layers.length}` }));
    const render = () => { if (!details.dataset.drawn) { details.dataset.drawn = "1"; details.append(layerBody(trace, layer)); } };
    details.addEventListener("toggle", () => details.open && render());
    if (i === 0) { details.open = true; render(); }
    box.append(details);
  });
}

function showStreamSize(trace) {
  // the residual stream's size: the mean length (norm) of the token vectors after each layer
  const sizes = [["embeddings", meanNorm(array(trace.embedding.sum))]];
  trace.layers.forEach((layer, i) => sizes.push([`layer ${i + 1}`, mean(array(layer.residual_2.norm).data)]));
  const top = Math.max(...sizes.map(s => s[1]));
  const rows = sizes.map(([name, v]) => [el("span", { class: "bar-label", text: name }),
    el("div", { class: "bar", style: `width:${(100 * v / top).toFixed(1)}%` }), el("span", { class: "bar-value", text: fmt(v) })]);
  document.getElementById("stream-size").replaceChildren(
    el("h3", { text: "The residual stream's size after each layer (mean vector length)" }),
    el("div", { class: "bars" }, ...rows.flat()));
}

function mean(data) { let s = 0; for (const v of data) s += v; return s / data.length; }
function meanNorm(a) {
  const [rows, cols] = a.shape; let total = 0;
  for (let r = 0; r < rows; r++) { let s = 0; for (let c = 0; c < cols; c++) s += a.data[r * cols + c] ** 2; total += Math.sqrt(s); }
  return total / rows;
}

// one row of numbers as a strip of cells (a per-token or per-number quantity)
function strip(caption, value, describe) {
  const a = array(value);
  return figure(caption, { a: { shape: [1, a.data.length], data: a.data }, describe: (r, c, v) => describe(c, v) });
}

function normFigures(name, norm, tokens) {
  const token = c => `token ${c} ${JSON.stringify(tokens[c])}`;
  const rms = norm.kind === "rmsnorm";  // Llama's RMSNorm: nothing subtracted, no bias
  const strips = [
    ...(rms ? [] : [strip("mean of each token's vector (subtracted)", norm.mean, (c, v) => `mean of ${token(c)}: ${fmt(v)}`)]),
    strip(rms ? `root mean square of each token's vector, √(mean(x²) + ${norm.eps}) (divided by)` : `std of each token's vector, √(variance + ${norm.eps}) (divided by)`,
      norm.std, (c, v) => `${rms ? "rms" : "std"} of ${token(c)}: ${fmt(v)}`),
    strip("scale (learned, one per number: multiplies)", norm.scale, (c, v) => `scale[${c}]: ${fmt(v)}`),
    ...(rms ? [] : [strip("bias (learned, one per number: added)", norm.bias, (c, v) => `bias[${c}]: ${fmt(v)}`)]),
    figure(rms ? "x / rms × scale" : "(x − mean) / std × scale + bias", { a: array(norm.out), describe: rowsAre(tokens) })];
  return [
    el("h3", { text: `${name}: ${rms ? "RMS normalization" : "layer normalization"}` }), el("p", { class: "code", text: norm.code }),
    el("div", { class: "wide" }, ...strips)];
}

// Llama's attention pieces, said in words where the model has them
function llamaNotes(att) {
  const notes = [];
  if (att.qk_norm) notes.push("queries and keys are RMS-normalized per head (qk_norm)");
  if (att.rope) notes.push("queries and keys are turned by their positions (RoPE) before the scores");
  if (att.kv_group > 1) notes.push(`each key/value head serves ${att.kv_group} query heads (grouped-query attention)`);
  return notes.length ? [el("p", { class: "muted llama", text: `Here ${notes.join("; ")}.` })] : [];
}

function layerBody(trace, layer) {
  const tokens = trace.tokens, att = layer.attention, mask = array(trace.mask);
  const scores = document.getElementById("show-scores").checked;
  const maps = array(scores ? att.scores : att.weights), heads = maps.shape[0];
  const headFigures = [];
  for (let h = 0; h < heads; h++) {
    const a = slice(maps, h);
    const describe = (q, k, v, hidden) => `head ${h + 1}: query token ${q} ${JSON.stringify(tokens[q])} → key token ${k} ${JSON.stringify(tokens[k])}\n` +
      (hidden ? "hidden by the causal mask (a later token): weight 0" : `${scores ? "score q·k/√hs" : "weight"} ${fmt(v)}`);
    const fig = withTokens(figure(`head ${h + 1}`, { a, kind: scores ? "signed" : "chance", mask, describe }), tokens);
    fig.classList.add("head"); fig.dataset.head = h;
    headFigures.push(fig);
  }
  const body = el("div");
  body.append(...normFigures("ln_1", layer.ln_1, tokens),
    el("h3", { text: "Multi-head self-attention: each head's " + (scores ? "query·key scores (÷√head size)" : "softmax weights") + ", causal mask in grey" }),
    el("p", { class: "code", text: att.code }),
    ...llamaNotes(att),
    el("p", { class: "muted", text: "Row = the token asking (query), column = the token looked at (key). Each row's weights add up to 1; grey cells are later tokens, hidden." }),
    el("div", { class: "heads" }, ...headFigures),
    el("div", { class: "wide" }, figure("the heads' outputs side by side (concatenated)", { a: array(att.concat), describe: rowsAre(tokens) })),
    el("div", { class: "wide" }, figure("projected (attn.proj): what attention adds to the residual stream", { a: array(att.proj), describe: rowsAre(tokens) })),
    ...normFigures("ln_2", layer.ln_2, tokens),
    el("h3", { text: `MLP (${layer.mlp.activation === "swiglu" ? "SwiGLU: proj(silu(gate(x)) × fc(x))" : layer.mlp.activation})` }), el("p", { class: "code", text: layer.mlp.code }),
    el("div", { class: "wide" }, figure("MLP output: what it adds to the residual stream", { a: array(layer.mlp.out), describe: rowsAre(tokens) })),
    el("div", { class: "wide" }, figure("the residual stream after this layer: x + attention + MLP", { a: array(layer.residual_2.out), describe: rowsAre(tokens) })));
  return body;
}
