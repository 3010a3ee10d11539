// The readable view of a scenario, and highlighting of what changed.
//
// Every rendered piece remembers the JSON Pointer of the value it shows, so a
// `changes` entry such as {"op": "replace", "path": "/roles/2/name"} finds its
// element directly (or its closest rendered ancestor, e.g. for a removal).
// All text goes in through textContent: scenario text comes from the model.

import { isPlainObject, parentPointer, parsePointer, pointer } from "./json-tools.js";

const KNOWN = ["title", "summary", "difficulty", "setting", "roles", "steps", "objectives"];
const pathMaps = new WeakMap(); // container -> Map(pointer -> element)

/** A new element with an optional class and text (text goes in as text, never as HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function humanKey(key) {
  const s = String(key).replace(/[_-]+/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : String(key);
}

/**
 * Render `scenario` into `container` (replacing what was there).
 * Returns the Map of pointer -> element.
 */
export function renderScenario(container, scenario) {
  const map = new Map();
  const mark = (node, path) => {
    node.dataset.path = path;
    map.set(path, node);
    return node;
  };

  function scalarText(value) {
    if (value === null) return "—";
    if (typeof value === "string") return value;
    return String(value);
  }

  /** A generic rendering of any JSON value. */
  function value(v, path) {
    if (Array.isArray(v)) {
      if (v.length === 0) return mark(el("span", "scn-empty", "(none)"), path);
      const simple = v.every((x) => !isPlainObject(x) && !Array.isArray(x));
      const list = mark(el(simple ? "ul" : "ol", "scn-list"), path);
      v.forEach((item, i) => {
        const li = mark(el("li"), pointer([...parsePointer(path), i]));
        if (simple) li.textContent = scalarText(item);
        else li.appendChild(value(item, pointer([...parsePointer(path), i])));
        list.appendChild(li);
      });
      return list;
    }
    if (isPlainObject(v)) {
      const keys = Object.keys(v);
      if (keys.length === 0) return mark(el("span", "scn-empty", "(empty)"), path);
      const dl = mark(el("dl", "scn-dl"), path);
      for (const key of keys) {
        const childPath = pointer([...parsePointer(path), key]);
        dl.appendChild(el("dt", "", humanKey(key)));
        const dd = el("dd");
        const inner = value(v[key], childPath);
        if (inner.dataset.path === childPath && inner.tagName === "SPAN") {
          // a scalar: mark the dd itself so the highlight covers the row's value
          inner.removeAttribute("data-path");
          dd.appendChild(inner);
          mark(dd, childPath);
        } else {
          dd.appendChild(inner);
        }
        dl.appendChild(dd);
      }
      return dl;
    }
    return mark(el("span", "scn-value", scalarText(v)), path);
  }

  /** A list of items that usually have a heading field (name / title) and a description. */
  function cards(list, key, headingFields, ordered) {
    const base = `/${key}`;
    if (!Array.isArray(list)) return value(list, base);
    if (list.length === 0) return mark(el("p", "scn-empty", "(none)"), base);
    const container = mark(el(ordered ? "ol" : "ul", `scn-cards scn-${key}`), base);
    list.forEach((item, i) => {
      const itemPath = `${base}/${i}`;
      const li = mark(el("li", "scn-card"), itemPath);
      if (isPlainObject(item)) {
        const heading = headingFields.find((f) => typeof item[f] === "string");
        if (heading) li.appendChild(mark(el("strong", "scn-card-title", item[heading]), `${itemPath}/${pointerToken(heading)}`));
        if (typeof item.description === "string" && heading !== "description")
          li.appendChild(mark(el("p", "scn-card-text", item.description), `${itemPath}/description`));
        const rest = Object.keys(item).filter((k) => k !== heading && !(k === "description" && typeof item.description === "string"));
        if (rest.length) {
          const extra = {};
          for (const k of rest) extra[k] = item[k];
          const dl = value(extra, itemPath);
          // value() marked the dl with the item's own path; the li owns that.
          dl.removeAttribute("data-path");
          map.set(itemPath, li);
          li.appendChild(dl);
        }
      } else if (typeof item === "string") {
        li.appendChild(el("span", "scn-card-text", item));
      } else {
        li.appendChild(value(item, itemPath));
        map.set(itemPath, li);
      }
      container.appendChild(li);
    });
    return container;
  }

  function section(key, title, body) {
    const sec = mark(el("section", `scn-section scn-section-${key}`), `/${key}`);
    const count = Array.isArray(scenario[key]) ? ` (${scenario[key].length})` : "";
    sec.appendChild(el("h4", "scn-h", title + count));
    if (body.dataset.path === `/${key}`) body.removeAttribute("data-path");
    sec.appendChild(body);
    map.set(`/${key}`, sec);
    return sec;
  }

  const root = el("article", "scn");
  if (!isPlainObject(scenario)) {
    root.appendChild(el("p", "scn-empty", "No scenario yet. Start from a sample, import a JSON file, or ask the agent to create one (mode Create)."));
    container.replaceChildren(root);
    pathMaps.set(container, map);
    return map;
  }
  map.set("", root);
  root.dataset.path = "";

  const head = el("header", "scn-head");
  const title = typeof scenario.title === "string" && scenario.title.trim() ? scenario.title : "(untitled)";
  head.appendChild(mark(el("h3", "scn-title", title), "/title"));
  if (typeof scenario.difficulty === "string") head.appendChild(mark(el("span", "scn-badge", scenario.difficulty), "/difficulty"));
  root.appendChild(head);

  if ("summary" in scenario) {
    const summary = typeof scenario.summary === "string" ? mark(el("p", "scn-summary", scenario.summary), "/summary") : section("summary", "Summary", value(scenario.summary, "/summary"));
    root.appendChild(summary);
  }
  if ("difficulty" in scenario && typeof scenario.difficulty !== "string")
    root.appendChild(section("difficulty", "Difficulty", value(scenario.difficulty, "/difficulty")));
  if ("setting" in scenario) {
    const body = typeof scenario.setting === "string" ? el("p", "scn-text", scenario.setting) : value(scenario.setting, "/setting");
    root.appendChild(section("setting", "Setting", body));
  }
  if ("roles" in scenario) root.appendChild(section("roles", "Roles", cards(scenario.roles, "roles", ["name", "title", "role"], false)));
  if ("steps" in scenario) root.appendChild(section("steps", "Steps", cards(scenario.steps, "steps", ["title", "name", "action"], true)));
  if ("objectives" in scenario) root.appendChild(section("objectives", "Objectives", cards(scenario.objectives, "objectives", ["title", "name"], false)));

  const others = Object.keys(scenario).filter((k) => !KNOWN.includes(k));
  if (others.length) {
    const sec = el("section", "scn-section scn-section-other");
    sec.appendChild(el("h4", "scn-h", "Other details"));
    const extra = {};
    for (const k of others) extra[k] = scenario[k];
    const dl = value(extra, "");
    dl.removeAttribute("data-path");
    map.set("", root);
    sec.appendChild(dl);
    root.appendChild(sec);
  }

  container.replaceChildren(root);
  pathMaps.set(container, map);
  return map;
}

function pointerToken(key) {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

/**
 * Highlight the elements for `changes` ([{op, path}]) in a container that
 * renderScenario filled. Returns the list of highlighted elements.
 */
export function highlightChanges(container, changes) {
  const hits = [];
  if (!Array.isArray(changes)) return hits;
  for (const c of changes) {
    const found = changeTarget(container, c);
    if (!found) continue;
    found.element.classList.add("changed");
    found.element.dataset.change = found.exact ? c.op : "inner";
    hits.push(found.element);
  }
  return hits;
}

/**
 * The element that shows a change: the one rendered for its path, else its
 * closest rendered ancestor (a removed item shows on its list).
 * Returns {element, exact} or null.
 */
export function changeTarget(container, change) {
  const map = pathMaps.get(container);
  if (!map || !change || typeof change.path !== "string") return null;
  let path = change.path;
  let element = map.get(path);
  while (!element && path !== "") {
    path = parentPointer(path);
    element = map.get(path);
  }
  return element ? { element, exact: path === change.path } : null;
}

/**
 * The JSON that forms live during a modify/create: text is appended as it
 * arrives; the <pre> is updated at most once per animation frame.
 */
export function createPreview(pre) {
  let text = "";
  let scheduled = false;
  const render = () => {
    scheduled = false;
    pre.textContent = text;
    pre.scrollTop = pre.scrollHeight;
  };
  return {
    append(piece) {
      text += piece;
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(render);
      }
    },
    reset() {
      text = "";
      pre.textContent = "";
    },
    get text() {
      return text;
    },
  };
}
