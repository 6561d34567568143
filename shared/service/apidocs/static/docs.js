// Renders the API's OpenAPI document: every operation with its security, parameters, request
// bodies and answers, and the named schemas they refer to. Same origin only; text is set with
// textContent, never parsed as HTML.
"use strict";

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function refName(ref) {
  return ref.split("/").pop();
}

function schemaLink(ref) {
  const name = refName(ref);
  return el("a", { href: "#schema-" + name }, name);
}

function constraints(schema) {
  const notes = [];
  for (const key of ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "format"]) {
    if (schema[key] !== undefined) notes.push(key + " " + schema[key]);
  }
  if (schema.enum) notes.push("one of " + schema.enum.map((v) => JSON.stringify(v)).join(", "));
  if (schema.const !== undefined) notes.push("= " + JSON.stringify(schema.const));
  if (schema.default !== undefined) notes.push("default " + JSON.stringify(schema.default));
  return notes.join("; ");
}

// a one-line type: "string", "array of InputSpec", "string | InputSpec", a link for a named schema
function typeOf(schema) {
  if (!schema || Object.keys(schema).length === 0) return el("span", {}, "any");
  if (schema.$ref) return schemaLink(schema.$ref);
  for (const key of ["oneOf", "anyOf"]) {
    if (schema[key]) {
      const span = el("span", {});
      schema[key].forEach((part, i) => {
        if (i) span.append(key === "oneOf" ? " or " : " | ");
        span.append(typeOf(part));
      });
      return span;
    }
  }
  if (schema.type === "array") return el("span", {}, "array of ", typeOf(schema.items));
  if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object"
      && !schema.properties) {
    return el("span", {}, "map of ", typeOf(schema.additionalProperties));
  }
  return el("span", {}, [].concat(schema.type || "any").join(" | "));
}

// a schema as a tree of its properties (named schemas are links, described once below)
function renderSchema(schema, depth) {
  const box = el("div", { class: "schema" }, typeOf(schema));
  const note = constraints(schema || {});
  if (note) box.append(el("span", { class: "note" }, " (" + note + ")"));
  if (schema && schema.description && depth > 0) box.append(el("div", { class: "note" }, schema.description));
  if (schema && schema.properties && depth < 4) {
    const required = new Set(schema.required || []);
    const list = el("ul", {});
    for (const [name, prop] of Object.entries(schema.properties)) {
      list.append(el("li", {}, el("span", { class: "name" + (required.has(name) ? " required" : "") }, name),
        ": ", renderSchema(prop, depth + 1)));
    }
    box.append(list);
  }
  return box;
}

function renderContent(content) {
  const table = el("table", {}, el("tr", {}, el("th", {}, "media type"), el("th", {}, "schema")));
  for (const [media, value] of Object.entries(content || {})) {
    table.append(el("tr", {}, el("td", {}, el("code", {}, media)), el("td", {}, renderSchema(value.schema || {}, 0))));
  }
  return table;
}

function renderParameters(parameters) {
  const table = el("table", {}, el("tr", {}, ...["name", "in", "type", "description"].map((h) => el("th", {}, h))));
  for (const p of parameters) {
    const schema = p.schema || {};
    const note = constraints(schema);
    table.append(el("tr", {},
      el("td", {}, el("code", { class: p.required ? "required" : "" }, p.name)),
      el("td", {}, p.in),
      el("td", {}, typeOf(schema), note ? " (" + note + ")" : ""),
      el("td", {}, p.description || "")));
  }
  return table;
}

function renderResponses(responses) {
  const table = el("table", {}, el("tr", {}, ...["status", "meaning", "body"].map((h) => el("th", {}, h))));
  for (const [status, answer] of Object.entries(responses)) {
    const headers = Object.keys(answer.headers || {});
    table.append(el("tr", {},
      el("td", { class: "status s" + status[0] }, status),
      el("td", {}, answer.description || "", headers.length ? el("div", { class: "note" }, "headers: " + headers.join(", ")) : null),
      el("td", {}, answer.content ? renderContent(answer.content) : "no body")));
  }
  return table;
}

function securityOf(doc, operation) {
  const requirements = operation.security !== undefined ? operation.security : doc.security || [];
  if (!requirements.length) return "no key needed";
  const schemes = (doc.components && doc.components.securitySchemes) || {};
  return "key: " + requirements.flatMap((r) => Object.keys(r)).map((name) => {
    const s = schemes[name] || {};
    return s.in + " " + s.name;
  }).join(" or ");
}

function renderOperation(doc, path, method, operation) {
  const id = "op-" + method + "-" + path.replace(/[^A-Za-z0-9]+/g, "-");
  const box = el("section", { class: "operation", id: id },
    el("h3", {}, el("span", { class: "method " + method }, method), el("span", { class: "path" }, path),
      el("span", {}, operation.summary || ""), el("span", { class: "security" }, securityOf(doc, operation))));
  if (operation.description) box.append(el("p", {}, operation.description));
  if (operation.parameters && operation.parameters.length) {
    box.append(el("h4", {}, "Parameters"), renderParameters(operation.parameters));
  }
  if (operation.requestBody) {
    box.append(el("h4", {}, "Request body" + (operation.requestBody.required ? " (required)" : "")));
    if (operation.requestBody.description) box.append(el("p", {}, operation.requestBody.description));
    box.append(renderContent(operation.requestBody.content));
  }
  box.append(el("h4", {}, "Answers"), renderResponses(operation.responses || {}));
  return [id, box];
}

function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  const summary = document.getElementById("summary");
  summary.textContent = doc.info.description || "";
  const servers = (doc.servers || []).map((s) => s.url + (s.description ? " (" + s.description + ")" : ""));
  if (servers.length) summary.append(el("div", { class: "note" }, "servers: " + servers.join(", ")));
  const toc = el("ul", {});
  const main = document.getElementById("operations");
  main.replaceChildren(el("h2", {}, "Operations"));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const [id, box] = renderOperation(doc, path, method, item[method]);
      toc.append(el("li", {}, el("a", { href: "#" + id }, method.toUpperCase() + " " + path)));
      main.append(box);
    }
  }
  document.getElementById("toc").replaceChildren(toc);
  const schemas = document.getElementById("schemas");
  schemas.replaceChildren(el("h2", {}, "Schemas"));
  const named = (doc.components && doc.components.schemas) || {};
  for (const name of Object.keys(named).sort()) {
    const schema = named[name];
    schemas.append(el("section", { class: "operation", id: "schema-" + name }, el("h3", {}, name),
      schema.description ? el("p", {}, schema.description) : null, renderSchema(schema, 0)));
  }
  if (location.hash) {
    const target = document.getElementById(location.hash.slice(1));
    if (target) target.scrollIntoView();
  }
}

async function load(key) {
  const url = document.body.dataset.openapi;
  const response = await fetch(url, { headers: key ? { "x-functions-key": key } : {}, credentials: "same-origin" });
  if (response.status === 401) throw new Error("the document needs the function key: open this page as ?code=KEY");
  if (!response.ok) throw new Error(url + " answered " + response.status);
  render(await response.json());
}

function fail(error) {
  document.getElementById("summary").replaceChildren(el("span", { class: "error" }, String(error.message || error)));
}

document.addEventListener("DOMContentLoaded", () => {
  load(new URLSearchParams(location.search).get("code")).catch(fail);
});
