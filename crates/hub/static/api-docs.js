// The API explorer of /api/docs: reads /api/openapi.json, lists every
// operation by tag, shows its parameters and the schemas of its answers, and
// sends a request to this hub when asked. No external code; DOM built with
// textContent only (no HTML from the document is ever parsed).
"use strict";

(async function () {
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  };
  const response = await fetch("/api/openapi.json");
  const spec = await response.json();
  document.getElementById("title").textContent = `${spec.info.title} API ${spec.info.version}`;
  document.getElementById("description").textContent = spec.info.description || "";
  const schemas = (spec.components && spec.components.schemas) || {};

  // A schema as readable JSON-ish text, references expanded one level deep.
  const describe = (schema, depth) => {
    if (!schema) return "";
    if (schema.$ref) {
      const name = schema.$ref.split("/").pop();
      return depth > 1 ? name : `${name} ${describe(schemas[name], depth + 1)}`;
    }
    if (schema.type === "array" || (Array.isArray(schema.type) && schema.type.includes("array"))) {
      return `[ ${describe(schema.items, depth)} ]`;
    }
    if (schema.properties) {
      const required = new Set(schema.required || []);
      const pad = "  ".repeat(depth + 1);
      const lines = Object.entries(schema.properties).map(([k, v]) => {
        const type = v.$ref ? v.$ref.split("/").pop() : [].concat(v.type || v.oneOf ? (v.type || "one of") : "any").join(" | ");
        const values = v.enum ? ` (${v.enum.join(", ")})` : "";
        const doc = v.description ? `  // ${v.description}` : "";
        return `${pad}${k}${required.has(k) ? "" : "?"}: ${type}${values}${doc}`;
      });
      return `{\n${lines.join("\n")}\n${"  ".repeat(depth)}}`;
    }
    if (schema.enum) return schema.enum.join(" | ");
    if (schema.oneOf) return schema.oneOf.map((s) => describe(s, depth)).join(" | ");
    return [].concat(schema.type || "any").join(" | ");
  };

  const operations = [];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      operations.push({ path, method: method.toUpperCase(), op });
    }
  }
  const byTag = new Map();
  for (const o of operations) {
    const tag = (o.op.tags && o.op.tags[0]) || "other";
    if (!byTag.has(tag)) byTag.set(tag, []);
    byTag.get(tag).push(o);
  }

  const root = document.getElementById("operations");
  for (const [tag, ops] of byTag) {
    const section = el("section", { class: "panel api-tag", "data-tag": tag }, el("h2", {}, tag));
    for (const { path, method, op } of ops) {
      const details = el("details", { class: "api-op", "data-search": `${method} ${path} ${op.summary || ""} ${tag}`.toLowerCase() });
      details.append(el("summary", {}, el("code", { class: "api-method" }, method), " ", el("code", {}, path), " — ", op.summary || ""));
      const params = op.parameters || [];
      const form = el("form", { class: "api-try" });
      for (const p of params) {
        form.append(el("label", {}, `${p.name} (${p.in}${p.required ? ", required" : ""})${p.description ? ": " + p.description : ""}`,
          el("input", { name: p.name, "data-in": p.in })));
      }
      if (op.requestBody) {
        const content = op.requestBody.content["application/json"];
        details.append(el("p", {}, "Body: " + (op.requestBody.description || describe(content && content.schema, 0))));
        form.append(el("label", {}, "JSON body", el("textarea", { name: "__body", rows: "4" }, "{}")));
      }
      for (const [status, answer] of Object.entries(op.responses || {})) {
        const content = answer.content || {};
        const media = Object.keys(content)[0];
        const shape = media === "application/json" ? describe(content[media].schema, 0) : media || "";
        details.append(el("h4", {}, `${status === "default" ? "Otherwise" : status}: ${answer.description || ""}`), el("pre", {}, shape));
      }
      const out = el("pre", { class: "api-result" });
      form.append(el("button", { type: "submit", class: "button" }, `Send ${method}`));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        let url = path;
        const query = new URLSearchParams();
        for (const input of form.querySelectorAll("input[data-in]")) {
          if (!input.value) continue;
          if (input.dataset.in === "path") url = url.replace(`{${input.name}}`, encodeURIComponent(input.value));
          else query.append(input.name, input.value);
        }
        if ([...query].length) url += `?${query}`;
        const headers = { Accept: "application/json" };
        const token = document.getElementById("token").value.trim();
        if (token) headers.Authorization = `Bearer ${token}`;
        const init = { method, headers, credentials: "same-origin" };
        const body = form.querySelector("textarea");
        if (body) { init.body = body.value; headers["Content-Type"] = "application/json"; }
        out.textContent = `${method} ${url} …`;
        try {
          const r = await fetch(url, init);
          const text = await r.text();
          let shown = text;
          try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
          out.textContent = `${r.status} ${r.statusText}\n\n${shown}`;
        } catch (e) {
          out.textContent = `failed: ${e}`;
        }
      });
      details.append(form, out);
      section.append(details);
    }
    root.append(section);
  }
  document.getElementById("filter").addEventListener("input", (event) => {
    const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const d of document.querySelectorAll(".api-op")) {
      d.hidden = !words.every((w) => d.dataset.search.includes(w));
    }
  });
  document.body.dataset.ready = "true";
})();
