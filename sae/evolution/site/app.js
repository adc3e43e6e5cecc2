// SAE feature browser. Reads window.FEATURE_DATA (data.js) and builds every element with
// createElement/textContent: no model-derived string ever goes through innerHTML.
(function () {
  "use strict";
  var D = window.FEATURE_DATA;
  var SVG = "http://www.w3.org/2000/svg";
  var PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b",
                 "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#1b9e77", "#7570b3"];
  var state = { prompt: 0, measure: D.measures[0], method: D.methods[0], selected: null };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = String(text); }
    return e;
  }
  function clear(e) { while (e.firstChild) { e.removeChild(e.firstChild); } }
  function key(layer, latent) { return layer + "/" + latent; }
  function colour(id) {
    var info = D.latents[id];
    var c = info && info.community ? info.community[state.method] : undefined;
    return c === undefined || c === null ? "#999" : PALETTE[c % PALETTE.length];
  }
  function fill(select, items, labels) {
    items.forEach(function (v, i) {
      var o = el("option", null, labels ? labels[i] : v);
      o.value = String(i);
      select.appendChild(o);
    });
  }

  function promptLatents() {
    return D.prompts[state.prompt].active;  // [layer][j] = [latent, activation]
  }

  function renderRows() {
    var rows = document.getElementById("rows");
    clear(rows);
    var p = D.prompts[state.prompt];
    document.getElementById("prompt-text").textContent = p.text;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("id", "edges");
    svg.style.position = "absolute";
    svg.style.left = "0";
    svg.style.top = "0";
    svg.style.pointerEvents = "none";
    rows.style.position = "relative";
    rows.appendChild(svg);
    var nodes = {};
    p.active.forEach(function (list, layer) {
      var row = el("div", "row");
      row.setAttribute("data-layer", String(layer));
      row.appendChild(el("div", "row-label", "layer " + layer));
      var box = el("div", "row-nodes");
      list.forEach(function (pair) {
        var id = key(layer, pair[0]);
        var n = el("span", "node", pair[0] + " (" + Number(pair[1]).toFixed(2) + ")");
        n.style.borderColor = colour(id);
        n.setAttribute("data-id", id);
        if (state.selected === id) { n.classList.add("selected"); }
        n.addEventListener("click", function () { select(id); });
        box.appendChild(n);
        nodes[id] = n;
      });
      row.appendChild(box);
      rows.appendChild(row);
    });
    drawEdges(svg, nodes);
  }

  function drawEdges(svg, nodes) {
    var rows = document.getElementById("rows");
    var base = rows.getBoundingClientRect();
    svg.setAttribute("width", String(rows.scrollWidth));
    svg.setAttribute("height", String(rows.scrollHeight));
    var count = 0;
    Object.keys(nodes).forEach(function (id) {
      var info = D.latents[id];
      if (!info || !info.next || !info.next[state.measure]) { return; }
      var layer = Number(id.split("/")[0]);
      info.next[state.measure].forEach(function (nb) {
        var target = nodes[key(layer + 1, nb[0])];
        if (!target || nb[1] < D.edge_min) { return; }
        var a = nodes[id].getBoundingClientRect(), b = target.getBoundingClientRect();
        var line = document.createElementNS(SVG, "line");
        line.setAttribute("x1", String(a.left + a.width / 2 - base.left));
        line.setAttribute("y1", String(a.bottom - base.top));
        line.setAttribute("x2", String(b.left + b.width / 2 - base.left));
        line.setAttribute("y2", String(b.top - base.top));
        line.setAttribute("stroke", colour(id));
        line.setAttribute("stroke-width", String(1 + 4 * Math.max(0, Math.min(1, nb[1]))));
        svg.appendChild(line);
        count += 1;
      });
    });
    svg.setAttribute("data-edges", String(count));
  }

  function contextLine(ctx) {
    var line = el("div", "ctx");
    line.appendChild(el("span", "val", Number(ctx.value).toFixed(3)));
    ctx.tokens.forEach(function (tok, i) {
      line.appendChild(el("span", i === ctx.hi ? "hi" : "tok", tok));
    });
    return line;
  }

  function neighbourList(title, list, layer) {
    var box = el("div", "neighbours");
    box.appendChild(el("h3", null, title));
    if (!list || list.length === 0) { box.appendChild(el("div", "hint", "none")); }
    (list || []).forEach(function (nb) {
      var id = key(layer, nb[0]);
      var item = el("div", "nb", id + "  " + state.measure + " = " + Number(nb[1]).toFixed(3));
      item.setAttribute("data-id", id);
      item.addEventListener("click", function () { select(id); });
      box.appendChild(item);
    });
    return box;
  }

  function select(id) {
    state.selected = id;
    var panel = document.getElementById("panel");
    clear(panel);
    var info = D.latents[id];
    var layer = Number(id.split("/")[0]);
    panel.appendChild(el("h2", null, "Latent " + id));
    if (!info) { panel.appendChild(el("p", "hint", "No data kept for this latent.")); return; }
    var comm = info.community ? info.community[state.method] : null;
    panel.appendChild(el("p", null, "max " + Number(info.max).toFixed(3) + ", fires on " +
      (100 * info.density).toFixed(3) + "% of tokens, " + state.method + " community " +
      (comm === null || comm === undefined ? "-" : comm)));
    var ctxBox = el("div", "contexts");
    ctxBox.appendChild(el("h3", null, "Top activating contexts"));
    (info.contexts || []).forEach(function (c) { ctxBox.appendChild(contextLine(c)); });
    panel.appendChild(ctxBox);
    panel.appendChild(neighbourList("Next layer (strongest " + state.measure + ")",
      info.next ? info.next[state.measure] : [], layer + 1));
    panel.appendChild(neighbourList("Previous layer (strongest " + state.measure + ")",
      info.prev ? info.prev[state.measure] : [], layer - 1));
    Array.prototype.forEach.call(document.querySelectorAll(".node"), function (n) {
      n.classList.toggle("selected", n.getAttribute("data-id") === id);
    });
  }

  function search(query) {
    var box = document.getElementById("search-results");
    clear(box);
    query = query.trim().toLowerCase();
    if (!query) { return; }
    var hits = Object.keys(D.latents).filter(function (id) {
      if (id === query) { return true; }
      return (D.latents[id].contexts || []).some(function (c) {
        return c.tokens.join("").toLowerCase().indexOf(query) >= 0;
      });
    }).slice(0, 50);
    box.appendChild(el("h3", null, hits.length + " latents match"));
    hits.forEach(function (id) {
      var item = el("span", "node", id);
      item.style.borderColor = colour(id);
      item.setAttribute("data-id", id);
      item.addEventListener("click", function () { select(id); });
      box.appendChild(item);
    });
  }

  function init() {
    document.getElementById("title").textContent = D.title;
    var ps = document.getElementById("prompt"), ms = document.getElementById("measure"),
        cs = document.getElementById("method");
    fill(ps, D.prompts, D.prompts.map(function (p) {
      return p.text.length > 60 ? p.text.slice(0, 57) + "..." : p.text;
    }));
    fill(ms, D.measures);
    fill(cs, D.methods);
    ps.addEventListener("change", function () { state.prompt = Number(ps.value); renderRows(); });
    ms.addEventListener("change", function () {
      state.measure = D.measures[Number(ms.value)];
      renderRows();
      if (state.selected) { select(state.selected); }
    });
    cs.addEventListener("change", function () {
      state.method = D.methods[Number(cs.value)];
      renderRows();
      if (state.selected) { select(state.selected); }
    });
    document.getElementById("search").addEventListener("input", function (e) {
      search(e.target.value);
    });
    window.addEventListener("resize", renderRows);
    renderRows();
    document.body.setAttribute("data-ready", "1");
  }
  init();
}());
