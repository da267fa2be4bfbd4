/* The segment builder: forms that write the condition tree's public JSON into the
 * "condition" textarea, and read it back when the textarea is edited. The textarea
 * is the form's field: without JavaScript it works alone. As the condition changes,
 * the live preview (POST to the admin's preview view) shows how many profiles match
 * and a few of them. No framework, nothing loaded from elsewhere. */
(function () {
  "use strict";

  var LABELS = {
    and: "All of these are true",
    or: "Any of these is true",
    not: "Not this",
    performed: "Did an event",
    feature: "Behaviour feature",
    trait: "Profile trait",
    segment: "In another segment",
    consent: "Has given consent"
  };
  var OP_LABELS = {
    equals: "is", not_equals: "is not", "in": "is one of", not_in: "is none of",
    contains: "contains", starts_with: "starts with", gt: ">", gte: ">=", lt: "<",
    lte: "<=", between: "is between", exists: "is set", not_exists: "is not set",
    within_last_days: "in the last N days", before_days_ago: "more than N days ago"
  };
  var TIMES_LABELS = { ">=": "at least", "=": "exactly", "<": "fewer than" };
  var UNITS = [["days", 86400], ["hours", 3600], ["minutes", 60], ["seconds", 1]];
  var EVENTS = ["Order Completed", "Product Viewed", "Product Added", "Checkout Started",
    "Email Opened", "Email Link Clicked", "Page Viewed"];
  var NO_VALUE = { exists: 1, not_exists: 1 };
  var LISTS = { "in": 1, not_in: 1 };
  var DAYS = { within_last_days: 1, before_days_ago: 1 };

  function start() {
    var cfgNode = document.getElementById("segment-builder-config");
    var textarea = document.getElementById("id_condition");
    var builder = document.getElementById("segment-builder");
    if (!cfgNode || !textarea || !builder) return;
    var cfg = JSON.parse(cfgNode.textContent);
    var treeBox = document.getElementById("segment-builder-tree");
    var problem = document.getElementById("segment-builder-problem");
    var preview = document.getElementById("segment-preview");
    var keyInput = document.getElementById("id_key");
    var featureKinds = {};
    cfg.features.forEach(function (f) { featureKinds[f.name] = f.kind; });

    var row = textarea.closest(".form-row") || textarea.parentNode;
    row.parentNode.insertBefore(builder, row);
    builder.hidden = false;

    var tree = null;
    var timer = null;
    var asked = 0;

    // -- small helpers ------------------------------------------------------------

    function el(tag, attrs, children) {
      var node = document.createElement(tag);
      Object.keys(attrs || {}).forEach(function (name) {
        var value = attrs[name];
        if (name === "text") node.textContent = value;
        else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
        else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
      });
      (children || []).forEach(function (child) {
        if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
      });
      return node;
    }

    function select(cls, label, options, current, onChange) {
      var s = el("select", { "class": cls, "aria-label": label, onchange: function () { onChange(s.value); } });
      var known = false;
      options.forEach(function (opt) {
        var value = Array.isArray(opt) ? opt[0] : opt;
        var text = Array.isArray(opt) ? opt[1] : opt;
        if (value === current) known = true;
        s.appendChild(el("option", { value: value, text: text }));
      });
      if (current !== undefined && current !== null && !known) {
        s.appendChild(el("option", { value: current, text: current + " (unknown)" }));
      }
      if (current !== undefined && current !== null) s.value = current;
      return s;
    }

    function input(cls, label, value, onInput, extra) {
      var attrs = { type: "text", "class": "vTextField " + cls, "aria-label": label, value: value };
      Object.keys(extra || {}).forEach(function (k) { attrs[k] = extra[k]; });
      attrs.oninput = function (e) { onInput(e.target.value); };
      return el("input", attrs);
    }

    function button(cls, text, onClick) {
      return el("button", { type: "button", "class": "button " + cls, text: text, onclick: onClick });
    }

    // A value typed in a box: numbers, true/false/null as JSON; "quoted" text stays text.
    function parseScalar(text, kind) {
      var t = text.trim();
      if (kind === "text" || kind === "date") return t;
      if (kind === "number") return t !== "" && isFinite(Number(t)) ? Number(t) : t;
      if (/^".*"$/.test(t)) return t.slice(1, -1);
      if (t !== "" && isFinite(Number(t))) return Number(t);
      if (t === "true") return true;
      if (t === "false") return false;
      if (t === "null") return null;
      return t;
    }

    function showScalar(value, kind) {
      if (value === undefined) return "";
      if (value === null) return "null";
      if (typeof value === "string" && !kind && (value.trim() !== "" && isFinite(Number(value)) ||
          value === "true" || value === "false" || value === "null")) {
        return '"' + value + '"';
      }
      return String(value);
    }

    // -- syncing ------------------------------------------------------------------

    function changed(rerender) {
      textarea.value = tree === null ? "" : JSON.stringify(tree, null, 2);
      if (rerender) render();
      schedulePreview();
    }

    function fromTextarea() {
      var text = textarea.value.trim();
      if (text === "") {
        tree = null;
        problem.hidden = true;
        render();
        schedulePreview();
        return;
      }
      try {
        tree = JSON.parse(text);
      } catch (err) {
        problem.textContent = "The JSON below is not valid (" + err.message + "): fix it there, " +
          "or empty it to start again with the forms.";
        problem.hidden = false;
        showPreview({ message: "Fix the JSON to see how many profiles match." });
        return;
      }
      problem.hidden = true;
      render();
      schedulePreview();
    }

    // -- the forms ----------------------------------------------------------------

    function addSelect(label, onPick) {
      var options = [["", label]].concat(cfg.nodeTypes.map(function (t) { return [t, LABELS[t] || t]; }));
      var s = select("add-node", label, options, "", function (value) {
        if (value) onPick(newNode(value));
      });
      return s;
    }

    function newNode(type) {
      switch (type) {
        case "and": case "or": return { type: type, children: [] };
        case "not": return { type: "not" };
        case "performed": return { type: "performed", event: "", times: 1, times_op: ">=" };
        case "feature": return { type: "feature", name: cfg.features[0].name, op: "gte", value: 1 };
        case "trait": return { type: "trait", path: "", op: "equals", value: "" };
        case "segment": return { type: "segment", key: cfg.segments.length ? cfg.segments[0].key : "" };
        case "consent": return { type: "consent", purpose: cfg.purposes.length ? cfg.purposes[0] : "" };
      }
      return { type: type };
    }

    // ``place`` knows where the node sits: replace(node) and remove().
    function nodeBox(node, place, path) {
      var known = node && typeof node === "object" && LABELS[node.type];
      var box = el("div", { "class": "cb-node cb-" + (known ? node.type : "raw"), "data-path": path });
      var head = el("div", { "class": "cb-head" });
      box.appendChild(head);
      if (!known) {
        head.appendChild(el("strong", { text: "Not a condition the forms know: edit it in the JSON below" }));
        box.appendChild(el("pre", { text: JSON.stringify(node) }));
      } else if (node.type === "and" || node.type === "or") {
        head.appendChild(select("cb-group-type", "Combine with", [["and", LABELS.and], ["or", LABELS.or]],
          node.type, function (value) { node.type = value; changed(true); }));
      } else {
        head.appendChild(el("strong", { "class": "cb-label", text: LABELS[node.type] }));
      }
      if (place.remove) {
        if (!(known && node.type === "not")) {
          head.appendChild(button("cb-negate", "not", function () { place.replace({ type: "not", child: node }); changed(true); }));
        } else {
          head.appendChild(button("cb-unwrap", "drop “not”", function () {
            if (node.child) place.replace(node.child); else place.remove();
            changed(true);
          }));
        }
        head.appendChild(button("cb-remove", "remove", function () { place.remove(); changed(true); }));
      }
      if (!known) return box;
      var body = el("div", { "class": "cb-body" });
      box.appendChild(body);
      ({
        and: groupBody, or: groupBody, not: notBody, performed: performedBody,
        feature: featureBody, trait: traitBody, segment: segmentBody, consent: consentBody
      })[node.type](node, body, path);
      return box;
    }

    function groupBody(node, body, path) {
      if (!Array.isArray(node.children)) node.children = [];
      node.children.forEach(function (child, i) {
        body.appendChild(nodeBox(child, {
          replace: function (n) { node.children[i] = n; },
          remove: function () { node.children.splice(i, 1); }
        }, path + ".children[" + i + "]"));
      });
      body.appendChild(addSelect("+ Add a condition…", function (n) { node.children.push(n); changed(true); }));
    }

    function notBody(node, body, path) {
      if (node.child === undefined) {
        body.appendChild(addSelect("Choose what must not hold…", function (n) { node.child = n; changed(true); }));
        return;
      }
      body.appendChild(nodeBox(node.child, {
        replace: function (n) { node.child = n; },
        remove: null
      }, path + ".child"));
    }

    function comparison(node, body, kind, ops, onOp) {
      var opOptions = cfg.operators.filter(function (op) { return ops.indexOf(op) >= 0; })
        .map(function (op) { return [op, OP_LABELS[op] || op]; });
      body.appendChild(select("cb-op", "Operator", opOptions, node.op, function (op) {
        var before = node.op;
        node.op = op;
        if (NO_VALUE[op]) delete node.value;
        else if (LISTS[op] && !Array.isArray(node.value)) node.value = node.value === undefined || node.value === "" ? [] : [node.value];
        else if (op === "between" && !(Array.isArray(node.value) && node.value.length === 2)) node.value = ["", ""];
        else if (DAYS[op] && typeof node.value !== "number") node.value = 30;
        else if (!LISTS[op] && op !== "between" && (Array.isArray(node.value) || NO_VALUE[before])) node.value = kind === "boolean" ? true : "";
        if (onOp) onOp(op);
        changed(true);
      }));
      var op = node.op;
      if (NO_VALUE[op]) return;
      if (kind === "boolean") {
        body.appendChild(select("cb-value", "Value", [["true", "true"], ["false", "false"]],
          String(node.value === true), function (v) { node.value = v === "true"; changed(false); }));
      } else if (LISTS[op]) {
        var shown = Array.isArray(node.value) ? node.value.map(function (v) { return showScalar(v, kind); }).join(", ") : "";
        body.appendChild(input("cb-value", "Values, separated by commas", shown, function (text) {
          node.value = text.split(",").map(function (t) { return t.trim(); })
            .filter(function (t) { return t !== ""; }).map(function (t) { return parseScalar(t, kind); });
          changed(false);
        }, { placeholder: "DE, AT" }));
      } else if (op === "between") {
        var pair = Array.isArray(node.value) ? node.value : ["", ""];
        [0, 1].forEach(function (i) {
          if (i === 1) body.appendChild(document.createTextNode(" and "));
          body.appendChild(input("cb-value cb-value-" + i, i ? "High" : "Low", showScalar(pair[i], kind), function (text) {
            if (!Array.isArray(node.value)) node.value = ["", ""];
            node.value[i] = parseScalar(text, kind);
            changed(false);
          }));
        });
      } else if (DAYS[op]) {
        body.appendChild(input("cb-value", "Days", node.value === undefined ? "" : String(node.value), function (text) {
          node.value = parseScalar(text, "number");
          changed(false);
        }, { type: "number", min: "0" }));
      } else {
        body.appendChild(input("cb-value", "Value", showScalar(node.value, kind), function (text) {
          node.value = parseScalar(text, kind);
          changed(false);
        }, { placeholder: kind === "date" ? "2026-01-31" : "" }));
      }
    }

    function featureBody(node, body) {
      body.appendChild(select("cb-feature-name", "Feature", cfg.features.map(function (f) {
        return [f.name, f.name + " (" + f.kind + ")"];
      }), node.name, function (name) {
        node.name = name;
        var ops = cfg.kindOperators[featureKinds[name]] || cfg.operators;
        if (ops.indexOf(node.op) < 0) {
          node.op = ops.indexOf("gte") >= 0 ? "gte" : ops.indexOf("equals") >= 0 ? "equals" : ops[0];
        }
        if (NO_VALUE[node.op]) delete node.value;
        else if (featureKinds[name] === "boolean") node.value = true;
        else if (featureKinds[name] === "number" && typeof node.value !== "number") node.value = 1;
        else if (featureKinds[name] === "date" && !DAYS[node.op]) node.value = "";
        else if (featureKinds[name] === "text") node.value = "";
        changed(true);
      }));
      var kind = featureKinds[node.name];
      comparison(node, body, kind, cfg.kindOperators[kind] || cfg.operators);
    }

    function traitBody(node, body) {
      body.appendChild(input("cb-path", "Trait path", node.path || "", function (text) {
        node.path = text.trim();
        changed(false);
      }, { placeholder: "address.country" }));
      comparison(node, body, null, cfg.operators);
    }

    function segmentBody(node, body) {
      var options = cfg.segments.map(function (s) { return [s.key, s.name + " (" + s.key + ")"]; });
      if (!options.length) body.appendChild(el("span", { "class": "help", text: "No other segment exists yet. " }));
      body.appendChild(select("cb-segment-key", "Segment", options, node.key, function (key) { node.key = key; changed(false); }));
    }

    function consentBody(node, body) {
      if (!cfg.purposes.length) body.appendChild(el("span", { "class": "help", text: "No consent purpose is configured. " }));
      body.appendChild(select("cb-purpose", "Purpose", cfg.purposes, node.purpose, function (p) { node.purpose = p; changed(false); }));
    }

    function windowOf(node) {
      if (node.between !== undefined) return "between";
      if (node.within_seconds !== undefined) return "within";
      return "ever";
    }

    function performedBody(node, body) {
      var listId = "cb-events";
      if (!document.getElementById(listId)) {
        builder.appendChild(el("datalist", { id: listId }, EVENTS.map(function (e) { return el("option", { value: e }); })));
      }
      body.appendChild(input("cb-event", "Event name", node.event || "", function (text) {
        node.event = text;
        changed(false);
      }, { list: listId, placeholder: "Product Viewed" }));
      body.appendChild(select("cb-times-op", "How often", cfg.timesOps.map(function (o) {
        return [o, TIMES_LABELS[o] || o];
      }), node.times_op || ">=", function (o) { node.times_op = o; changed(false); }));
      body.appendChild(input("cb-times", "Times", String(node.times === undefined ? 1 : node.times), function (text) {
        node.times = parseScalar(text, "number");
        changed(false);
      }, { type: "number", min: "1", style: "width:5em" }));
      body.appendChild(document.createTextNode(" times "));
      var win = windowOf(node);
      body.appendChild(select("cb-window", "When", [["ever", "ever"], ["within", "in the last"], ["between", "between dates"]],
        win, function (w) {
          delete node.within_seconds;
          delete node.between;
          if (w === "within") node.within_seconds = 3600;
          if (w === "between") node.between = ["", ""];
          changed(true);
        }));
      if (win === "within") {
        var seconds = node.within_seconds;
        var unit = UNITS.filter(function (u) { return typeof seconds === "number" && seconds % u[1] === 0; })[0] || UNITS[3];
        var amount = input("cb-within", "Window length", typeof seconds === "number" ? String(seconds / unit[1]) : String(seconds),
          function () { update(); }, { type: "number", min: "1", style: "width:6em" });
        var unitSelect = select("cb-unit", "Unit", UNITS.map(function (u) { return [String(u[1]), u[0]]; }),
          String(unit[1]), function () { update(); });
        var update = function () {
          var n = parseScalar(amount.value, "number");
          node.within_seconds = typeof n === "number" ? Math.round(n * Number(unitSelect.value)) : n;
          changed(false);
        };
        body.appendChild(amount);
        body.appendChild(unitSelect);
      } else if (win === "between") {
        [0, 1].forEach(function (i) {
          if (i === 1) body.appendChild(document.createTextNode(" and "));
          body.appendChild(input("cb-between-" + i, i ? "End date" : "Start date",
            Array.isArray(node.between) ? String(node.between[i] || "") : "", function (text) {
              if (!Array.isArray(node.between)) node.between = ["", ""];
              node.between[i] = text.trim();
              changed(false);
            }, { placeholder: i ? "2026-12-31" : "2026-01-01" }));
        });
      }
      var filters = el("div", { "class": "cb-filters" });
      body.appendChild(filters);
      if (!Array.isArray(node.where)) {
        if (node.where !== undefined) {
          filters.appendChild(el("span", { "class": "help", text: "where: edit it in the JSON below" }));
          return;
        }
      }
      (node.where || []).forEach(function (filter, i) {
        var line = el("div", { "class": "cb-filter" }, [el("span", { text: "where " })]);
        if (filter && typeof filter === "object") {
          line.appendChild(input("cb-filter-path", "Event path", filter.path || "", function (text) {
            filter.path = text.trim();
            changed(false);
          }, { placeholder: "properties.category" }));
          comparison(filter, line, null, cfg.operators);
        } else {
          line.appendChild(el("code", { text: JSON.stringify(filter) }));
        }
        line.appendChild(button("cb-filter-remove", "remove", function () {
          node.where.splice(i, 1);
          if (!node.where.length) delete node.where;
          changed(true);
        }));
        filters.appendChild(line);
      });
      filters.appendChild(button("cb-add-filter", "+ where…", function () {
        if (!Array.isArray(node.where)) node.where = [];
        node.where.push({ path: "properties.", op: "equals", value: "" });
        changed(true);
      }));
    }

    function render() {
      treeBox.textContent = "";
      if (tree === null) {
        treeBox.appendChild(addSelect("+ Add a condition…", function (n) {
          tree = (n.type === "and" || n.type === "or" || n.type === "not") ? n : { type: "and", children: [n] };
          changed(true);
        }));
        return;
      }
      treeBox.appendChild(nodeBox(tree, {
        replace: function (n) { tree = n; },
        remove: function () { tree = null; }
      }, "condition"));
      if (!(tree && (tree.type === "and" || tree.type === "or"))) {
        treeBox.appendChild(button("cb-group", "+ and another condition", function () {
          tree = { type: "and", children: [tree] };
          changed(true);
        }));
      }
    }

    // -- the live preview -----------------------------------------------------------

    function showPreview(state) {
      var count = preview.querySelector(".preview-count");
      var errors = preview.querySelector(".preview-errors");
      var sample = preview.querySelector(".preview-sample");
      var list = preview.querySelector(".preview-sample-list");
      errors.textContent = "";
      errors.hidden = !state.errors;
      sample.hidden = true;
      preview.classList.toggle("is-stale", !!state.stale);
      if (state.message) count.textContent = state.message;
      if (state.errors) {
        count.textContent = "The condition is not complete yet:";
        state.errors.forEach(function (e) { errors.appendChild(el("li", { text: e })); });
      }
      if (typeof state.count === "number") {
        count.textContent = state.count + (state.count === 1 ? " profile matches" : " profiles match");
        if (state.sample && state.sample.length) {
          list.textContent = "";
          state.sample.forEach(function (s, i) {
            if (i) list.appendChild(document.createTextNode(", "));
            list.appendChild(el("a", { href: s.url, text: s.external_id }, []));
          });
          sample.hidden = false;
        }
      }
    }

    function schedulePreview() {
      if (timer) clearTimeout(timer);
      if (tree === null) {
        showPreview({ message: "Add a condition to see how many profiles match." });
        return;
      }
      preview.classList.add("is-stale");
      timer = setTimeout(askPreview, 400);
    }

    function askPreview() {
      var mine = ++asked;
      var token = document.querySelector("input[name=csrfmiddlewaretoken]");
      var key = cfg.ownKey || (keyInput ? keyInput.value.trim() : "");
      fetch(cfg.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token ? token.value : "" },
        body: JSON.stringify({ condition: tree, key: key || null })
      }).then(function (response) {
        return response.json().then(function (data) { return { status: response.status, data: data }; });
      }).then(function (answer) {
        if (mine !== asked) return; // a newer question is on its way
        if (answer.status === 200) showPreview(answer.data);
        else if (answer.status === 400) showPreview({ errors: answer.data.errors || ["Invalid condition."] });
        else showPreview({ message: (answer.data.errors || ["The preview is not available."]).join(" ") });
      }).catch(function () {
        if (mine === asked) showPreview({ message: "The preview is not available right now." });
      });
    }

    textarea.addEventListener("input", fromTextarea);
    fromTextarea();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
