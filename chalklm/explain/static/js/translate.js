// The translation panel: a German sentence in, the beam's English candidates out, and
// every attention map: the encoder's, the decoder's own (causal) and its cross-attention.
import { api, el, figure, fmt, showError } from "./ui.js";

export function setupTranslate() {
  document.getElementById("translate-form").addEventListener("submit", event => {
    event.preventDefault();
    translate();
  });
  return translate();
}

async function translate() {
  const sentence = document.getElementById("sentence").value;
  const beam_size = Number(document.getElementById("beam").value);
  const engine = document.getElementById("translate-engine").value;
  showError("");
  try {
    const r = await api("/api/translate", { sentence, beam_size, engine });
    document.getElementById("translate-code").textContent = `${r.code.search}; ${r.code.model}; attention: ${r.attention.code}`;
    document.getElementById("translation").textContent = r.translation;
    const rows = r.candidates.map((c, i) => el("tr", {}, el("td", { text: i + 1 }), el("td", { text: c.text }), el("td", { text: fmt(c.score) })));
    document.getElementById("candidates").replaceChildren(
      el("tr", {}, el("th", { text: "#" }), el("th", { text: "candidate the beam finished" }), el("th", { text: "score (log-chance ÷ length penalty)" })), ...rows);
    drawMaps(r);
    document.body.dataset.translated = String(Number(document.body.dataset.translated || 0) + 1);
  } catch (error) {
    showError(error.message);
  }
}

function heads(title, maps, rowLabels, colLabels, causal) {
  const box = el("div", { class: "heads" });
  maps.forEach((m, h) => {
    const rows = m.length, cols = m[0].length;
    const a = { shape: [rows, cols], data: Float32Array.from(m.flat()) };
    const mask = causal ? { data: Float32Array.from({ length: rows * cols }, (_, i) => (i % cols > Math.floor(i / cols) ? 1 : 0)) } : null;
    const describe = (r, c, v, hidden) => `head ${h + 1}: ${JSON.stringify(rowLabels[r])} reads ${JSON.stringify(colLabels[c])}\n` + (hidden ? "hidden by the causal mask" : `weight ${fmt(v)}`);
    const fig = figure(`head ${h + 1}`, { a, kind: "chance", mask, describe });
    fig.classList.add("head");
    box.append(fig);
  });
  return [el("h3", { text: title }), box];
}

function drawMaps(r) {
  const src = r.source_tokens, inputs = r.target_inputs, written = r.target_tokens, att = r.attention;
  const parts = [el("p", { class: "muted", text: `Source tokens: ${src.map(t => JSON.stringify(t)).join(" ")}. Rows read, columns are read; each row adds up to 1.` })];
  att.encoder_self.forEach((maps, i) => parts.push(...heads(`Encoder layer ${i + 1}: self-attention (German × German)`, maps, src, src, false)));
  att.decoder_self.forEach((maps, i) => parts.push(...heads(`Decoder layer ${i + 1}: causal self-attention (English so far)`, maps, inputs, inputs, true)));
  att.cross.forEach((maps, i) => parts.push(...heads(`Decoder layer ${i + 1}: cross-attention (English token written × German token read)`, maps, written, src, false)));
  document.getElementById("translate-maps").replaceChildren(...parts);
}
