// nnspine QC report: keys, marks, search, exports. Data come from the JSON script element and are put
// into the page with textContent / createElement only (never the HTML parser), so names show as text.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("qc-data").textContent);
  var entries = Array.isArray(data.entries) ? data.entries : [];
  var STORE = "nnspine-qc:" + String(data.report_id);
  var MARKS = ["", "Pass", "Fail", "Artifact"];
  var SYMBOL = { "": "", Pass: "\u2705", Fail: "\u274c", Artifact: "\u26a0\ufe0f" };
  var YML_KEYS = ["FILES_SEG", "FILES_LABEL", "FILES_LESION"];
  var ROW_H = 26;
  var COLUMNS = [
    ["date", "date"], ["dataset", "dataset"], ["subject", "subject"], ["session", "session"],
    ["contrast", "contrast"], ["file", "file"], ["command", "command"], ["model", "model"],
    ["qc", "QC"], ["rank", "rank"]
  ];
  var byId = {};
  entries.forEach(function (e) { byId[e.id] = e; });
  var marks = readMarks();
  var haystack = entries.map(function (e) {
    var values = Object.keys(e.values || {}).map(function (k) { return k + " " + e.values[k]; }).join(" ");
    return [e.date, e.dataset, e.subject, e.session, e.contrast, e.file, e.command, e.cmdline, e.model, values]
      .join(" ").toLowerCase();
  });
  var view = entries.map(function (_, i) { return i; });
  var selected = 0;
  var showOverlay = true;
  var body = document.getElementById("table-body");
  var spacer = document.getElementById("spacer");
  var search = document.getElementById("search");
  var filter = document.getElementById("command-filter");
  var bg = document.getElementById("background");
  var ov = document.getElementById("overlay");

  function text(tag, value, cls) {
    var node = document.createElement(tag);
    node.textContent = value == null ? "" : String(value);
    if (cls) { node.className = cls; }
    return node;
  }

  function readMarks() {
    try {
      var stored = JSON.parse(window.localStorage.getItem(STORE) || "{}");
      return cleanMarks(stored && stored.marks);
    } catch (err) {
      return {};
    }
  }

  function cleanMarks(raw) {
    var out = {};
    if (!raw || typeof raw !== "object") { return out; }
    Object.keys(raw).forEach(function (id) {
      var m = raw[id];
      if (!Object.prototype.hasOwnProperty.call(byId, id) || !m || typeof m !== "object") { return; }
      var qc = MARKS.indexOf(m.qc) > 0 ? m.qc : "";
      var rank = (typeof m.rank === "number" && m.rank >= 0 && m.rank <= 9) ? Math.floor(m.rank) : null;
      if (qc || rank !== null) { out[id] = { qc: qc, rank: rank }; }
    });
    return out;
  }

  function writeMarks() {
    try {
      window.localStorage.setItem(STORE, JSON.stringify({ version: 1, marks: marks }));
    } catch (err) {
      setStatus("marks not kept: the browser refused local storage (" + err + ")");
    }
  }

  function mark(e) { return marks[e.id] || { qc: "", rank: null }; }

  function cell(e, key) {
    if (key === "qc") { return SYMBOL[mark(e).qc]; }
    if (key === "rank") { var r = mark(e).rank; return r === null ? "" : r; }
    return e[key];
  }

  function setStatus(message) { document.getElementById("status").textContent = message; }

  function updateCount() {
    var counts = { Pass: 0, Fail: 0, Artifact: 0 };
    Object.keys(marks).forEach(function (id) { if (marks[id].qc) { counts[marks[id].qc] += 1; } });
    document.getElementById("count").textContent = view.length + " of " + entries.length + " shown; " +
      counts.Pass + " \u2705 " + counts.Fail + " \u274c " + counts.Artifact + " \u26a0\ufe0f";
  }

  function renderRows() {
    spacer.style.height = (view.length * ROW_H) + "px";
    var old = body.querySelectorAll(".row");
    for (var k = 0; k < old.length; k++) { body.removeChild(old[k]); }
    var first = Math.max(0, Math.floor(body.scrollTop / ROW_H) - 5);
    var last = Math.min(view.length, first + Math.ceil((body.clientHeight || 600) / ROW_H) + 10);
    for (var pos = first; pos < last; pos++) {
      var e = entries[view[pos]];
      var row = document.createElement("div");
      row.className = "row" + (pos === selected ? " selected" : "") + (mark(e).qc ? " " + mark(e).qc : "");
      row.style.top = (pos * ROW_H) + "px";
      row.setAttribute("data-pos", String(pos));
      row.setAttribute("data-id", String(e.id));
      COLUMNS.forEach(function (c) {
        var span = text("span", cell(e, c[0]));
        span.title = span.textContent;
        row.appendChild(span);
      });
      body.appendChild(row);
    }
    updateCount();
  }

  function showDetails(e) {
    var dl = document.getElementById("details");
    while (dl.firstChild) { dl.removeChild(dl.firstChild); }
    if (!e) { return; }
    var items = [["file", e.file], ["command line", e.cmdline], ["model", e.model], ["date", e.date],
      ["dataset", e.dataset], ["subject", e.subject], ["session", e.session], ["contrast", e.contrast],
      ["view", e.plane], ["QC", (mark(e).qc || "not marked") + " " + SYMBOL[mark(e).qc]],
      ["rank", mark(e).rank === null ? "" : mark(e).rank]];
    Object.keys(e.values || {}).forEach(function (k) { items.push([k, e.values[k]]); });
    items.forEach(function (it) {
      if (it[1] === "" || it[1] == null) { return; }
      dl.appendChild(text("dt", it[0]));
      dl.appendChild(text("dd", it[1]));
    });
  }

  function current() { return view.length ? entries[view[selected]] : null; }

  function showSelected() {
    var e = current();
    if (e) {
      bg.src = String(e.background);
      ov.src = String(e.overlay);
    } else {
      bg.removeAttribute("src");
      ov.removeAttribute("src");
    }
    ov.hidden = !showOverlay;
    document.body.setAttribute("data-selected", e ? String(e.id) : "");
    showDetails(e);
  }

  function scrollIntoView() {
    var top = selected * ROW_H;
    if (top < body.scrollTop) { body.scrollTop = top; }
    else if (top + ROW_H > body.scrollTop + body.clientHeight) { body.scrollTop = top + ROW_H - body.clientHeight; }
  }

  function select(pos) {
    if (!view.length) { selected = 0; showSelected(); renderRows(); return; }
    selected = Math.max(0, Math.min(view.length - 1, pos));
    scrollIntoView();
    renderRows();
    showSelected();
  }

  function applyFilter() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var command = filter.value;
    var keep = current();
    view = [];
    for (var i = 0; i < entries.length; i++) {
      if (command && entries[i].command !== command) { continue; }
      var hay = haystack[i];
      if (words.every(function (w) { return hay.indexOf(w) >= 0; })) { view.push(i); }
    }
    var at = keep ? view.indexOf(entries.indexOf(keep)) : -1;
    body.scrollTop = 0;
    select(at >= 0 ? at : 0);
  }

  function setMark(e, change) {
    var m = mark(e);
    var next = { qc: m.qc, rank: m.rank };
    change(next);
    if (next.qc || next.rank !== null) { marks[e.id] = next; } else { delete marks[e.id]; }
    writeMarks();
    renderRows();
    showDetails(e);
  }

  function download(name, type, content) {
    var url = URL.createObjectURL(new Blob([content], { type: type }));
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  // qc_fail.yml / qc_artifact.yml in manual-correction's layout: FILES_SEG / FILES_LABEL / FILES_LESION lists of
  // input-relative paths; each path a JSON string, which is a YAML double-quoted scalar.
  function saveYml(kind, name) {
    var groups = {};
    entries.forEach(function (e) {
      if (mark(e).qc !== kind) { return; }
      var key = YML_KEYS.indexOf(e.yml_key) >= 0 ? e.yml_key : "FILES_SEG";
      groups[key] = groups[key] || [];
      if (groups[key].indexOf(e.file) < 0) { groups[key].push(String(e.file)); }
    });
    var lines = ["# " + name + ": entries marked " + kind + " in the nnspine QC report " + data.report_id];
    YML_KEYS.forEach(function (key) {
      if (!groups[key]) { return; }
      lines.push(key + ":");
      groups[key].forEach(function (f) { lines.push("- " + JSON.stringify(f)); });
    });
    if (lines.length === 1) { lines.push("{}"); }
    download(name, "text/yaml", lines.join("\n") + "\n");
    setStatus("saved " + name);
  }

  function saveAll() {
    var state = { format: "nnspine-qc-state", version: 1, report_id: data.report_id,
      saved: new Date().toISOString(), marks: marks,
      entries: entries.map(function (e) { return { id: e.id, file: e.file, command: e.command }; }) };
    download("qc_state.json", "application/json", JSON.stringify(state, null, 1));
    setStatus("saved qc_state.json");
  }

  function load(file) {
    var reader = new FileReader();
    reader.onload = function () {
      var state;
      try { state = JSON.parse(String(reader.result)); } catch (err) { state = null; }
      if (!state || state.format !== "nnspine-qc-state" || typeof state.marks !== "object") {
        setStatus(file.name + ": not a state file saved by this report (Save all)");
        return;
      }
      marks = cleanMarks(state.marks);
      writeMarks();
      renderRows();
      showSelected();
      setStatus("loaded " + Object.keys(marks).length + " marks from " + file.name);
    };
    reader.readAsText(file);
  }

  function onKey(ev) {
    var target = ev.target;
    if (target === search) {
      if (ev.key === "Enter" || ev.key === "Escape") { search.blur(); body.focus(); ev.preventDefault(); }
      return;
    }
    if (target && (target.tagName === "SELECT" || target.tagName === "INPUT" || target.tagName === "TEXTAREA")) { return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var e = current();
    if (ev.key === "ArrowDown") { select(selected + 1); }
    else if (ev.key === "ArrowUp") { select(selected - 1); }
    else if (ev.key === "ArrowRight") { showOverlay = !showOverlay; ov.hidden = !showOverlay; }
    else if (ev.key === "f" && e) {
      setMark(e, function (m) { m.qc = MARKS[(MARKS.indexOf(m.qc) + 1) % MARKS.length]; });
    } else if (/^[0-9]$/.test(ev.key) && e) {
      setMark(e, function (m) { m.rank = Number(ev.key); });
    } else if (ev.key === "/") { search.focus(); search.select(); }
    else { return; }
    ev.preventDefault();
  }

  COLUMNS.forEach(function (c) { document.getElementById("table-head").appendChild(text("span", c[1])); });
  var commands = [];
  entries.forEach(function (e) { if (commands.indexOf(e.command) < 0) { commands.push(e.command); } });
  commands.sort().forEach(function (c) {
    var option = text("option", c);
    option.value = String(c);
    filter.appendChild(option);
  });
  search.addEventListener("input", applyFilter);
  filter.addEventListener("change", function () { applyFilter(); body.focus(); });
  body.addEventListener("scroll", renderRows);
  body.addEventListener("click", function (ev) {
    var row = ev.target.closest ? ev.target.closest(".row") : null;
    if (row) { select(Number(row.getAttribute("data-pos"))); }
  });
  document.addEventListener("keydown", onKey);
  document.getElementById("save-fails").addEventListener("click", function () { saveYml("Fail", "qc_fail.yml"); });
  document.getElementById("save-artifacts").addEventListener("click", function () { saveYml("Artifact", "qc_artifact.yml"); });
  document.getElementById("save-all").addEventListener("click", saveAll);
  var loadFile = document.getElementById("load-file");
  document.getElementById("load").addEventListener("click", function () { loadFile.click(); });
  loadFile.addEventListener("change", function () { if (loadFile.files.length) { load(loadFile.files[0]); } loadFile.value = ""; });
  window.addEventListener("resize", renderRows);
  select(0);
  body.focus();
  document.body.setAttribute("data-ready", "1");
})();
