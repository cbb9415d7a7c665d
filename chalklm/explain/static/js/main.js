// chalklm explain: the page is one client of the JSON API (docs/explain-api.md).
import { api, showError } from "./ui.js";
import { showEmbeddings, showLayers, showTokens } from "./model.js";
import { drawBars, generate, pick, showOutput } from "./output.js";
import { setupLeaf } from "./leaf.js";
import { setupRun } from "./run.js";
import { setupTranslate } from "./translate.js";

let info = null, trace = null;
const $ = id => document.getElementById(id);

async function run() {
  const prompt = $("prompt").value, engine = $("engine").value;
  showError("");
  $("run").disabled = true;
  const began = performance.now();
  try {
    const [tokens, forward] = await Promise.all([api("/api/tokens", { prompt }), api("/api/forward", { prompt, engine })]);
    trace = forward;
    showTokens(trace, tokens.tokens, tokens.code);
    showEmbeddings(trace);
    showLayers(trace);
    showOutput(trace, info);
    $("timing").textContent = `${trace.ids.length} tokens, ${Math.round(performance.now() - began)} ms (${engine === "torch" ? "fast engine" : "glass box"})`;
    document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1);
  } catch (error) {
    showError(error.message);
  } finally {
    $("run").disabled = false;
  }
}

async function boot() {
  info = await api("/api/info");
  if (info.kind === "gpt") {
    const c = info.config;
    $("about").textContent = `${info.checkpoint}: GPT, ${c.n_layer} layers, ${c.n_head} heads, ${c.n_embd} wide, context ${c.block_size}, ${c.vocab_size} tokens (${info.tokenizer})`;
    document.querySelectorAll(".model-only").forEach(node => { node.hidden = false; });
    $("prompt-form").addEventListener("submit", event => { event.preventDefault(); run(); });
    $("engine").addEventListener("change", run);
    $("show-scores").addEventListener("change", () => trace && showLayers(trace));
    for (const id of ["temperature", "top-k", "top-p"]) $(id).addEventListener("input", drawBars);
    $("next").addEventListener("click", () => { $("prompt").value += info.vocab[pick()]; run(); });
    $("generate").addEventListener("click", () => {
      $("generate").disabled = true;
      generate($("prompt").value, $("engine").value, () => { $("generate").disabled = false; });
    });
    if (info.tokenizer !== "BPETokenizer" && ![..."ROMEO:"].every(ch => info.vocab.includes(ch))) $("prompt").value = info.vocab.slice(0, 4).join("");
    await Promise.all([run(), setupRun().catch(error => showError(error.message))]);
  } else if (info.kind === "transformer") {
    const c = info.config;
    $("about").textContent = `${info.checkpoint}: Transformer, ${c.n_layer_enc} encoder and ${c.n_layer_dec} decoder layers, ${c.n_head} heads, ${c.n_embd} wide (${info.tokenizer})`;
    document.querySelectorAll(".translation-only, .run-panel").forEach(node => { node.hidden = false; });
    await Promise.all([setupTranslate(), setupRun().catch(error => showError(error.message))]);
  } else {
    $("about").textContent = "The article's first network: is it a leaf or a flower?";
  }
  await setupLeaf();
  document.body.dataset.booted = "1";
}

boot().catch(error => showError(error.message));
