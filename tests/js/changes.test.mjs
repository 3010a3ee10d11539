// Unit tests for static/json-patch.js (the preview's patch apply) and static/change-words.js.
// Run: node --test tests/js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { PatchError, applyOperation } from "../../static/json-patch.js";
import { describeChange, describeChanges, differentScenarioLine, resolveChangePaths, shortTitle, versionRelation } from "../../static/change-words.js";

const doc = () => ({
  title: "Blue Harbor",
  difficulty: "medium",
  roles: [{ name: "Commander" }, { name: "Scribe" }],
  steps: [{ title: "Alarm" }, { title: "Evacuate" }, { title: "Roll call" }, { title: "Debrief" }],
  objectives: ["Be quick"],
});

describe("applyOperation", () => {
  test("add, remove, replace, move, copy, test; the input is never changed", () => {
    const d = doc();
    const frozen = JSON.stringify(d);
    let r = applyOperation(d, { op: "add", path: "/roles/-", value: { name: "Journalist" } });
    assert.equal(r.path, "/roles/2");
    assert.equal(r.doc.roles[2].name, "Journalist");
    assert.equal(r.doc.steps, d.steps, "untouched parts are shared");
    r = applyOperation(r.doc, { op: "add", path: "/roles/0", value: { name: "First" } });
    assert.deepEqual(r.doc.roles.map((x) => x.name), ["First", "Commander", "Scribe", "Journalist"]);
    r = applyOperation(r.doc, { op: "remove", path: "/steps/3" });
    assert.equal(r.doc.steps.length, 3);
    r = applyOperation(r.doc, { op: "replace", path: "/steps/0/title", value: "Siren" });
    assert.equal(r.doc.steps[0].title, "Siren");
    r = applyOperation(r.doc, { op: "move", from: "/roles/0", path: "/roles/-" });
    assert.equal(r.doc.roles.at(-1).name, "First");
    r = applyOperation(r.doc, { op: "copy", from: "/title", path: "/subtitle" });
    assert.equal(r.doc.subtitle, "Blue Harbor");
    r = applyOperation(r.doc, { op: "test", path: "/difficulty", value: "medium" });
    assert.equal(r.doc.difficulty, "medium");
    r = applyOperation(r.doc, { op: "add", path: "/a~1b", value: 1 });
    assert.equal(r.doc["a/b"], 1);
    assert.equal(JSON.stringify(d), frozen);
  });

  test("failures throw PatchError", () => {
    const bad = [
      { op: "remove", path: "/steps/9" },
      { op: "replace", path: "/nope", value: 1 },
      { op: "add", path: "/roles/7", value: {} },
      { op: "add", path: "/missing/0", value: {} },
      { op: "test", path: "/title", value: "Other" },
      { op: "frobnicate", path: "/title" },
      { op: "add", path: "title", value: 1 },
      { op: "remove", path: "" },
    ];
    for (const op of bad) assert.throws(() => applyOperation(doc(), op), PatchError, JSON.stringify(op));
  });
});

describe("describeChange", () => {
  const before = doc();
  const after = { ...doc(), title: "Red Harbor", roles: [...doc().roles, { name: "Journalist" }] };

  test("the server's text wins", () => {
    assert.equal(describeChange({ op: "add", path: "/roles/2", text: "added role Journalist (press)" }), "added role Journalist (press)");
  });

  test("words from op and path, with names from the scenario", () => {
    const cases = [
      [{ op: "add", path: "/roles/2" }, "added role Journalist"],
      [{ op: "add", path: "/roles/-", value: { name: "Journalist" } }, "added role Journalist"],
      [{ op: "replace", path: "/title" }, "renamed the title to “Red Harbor”"],
      [{ op: "replace", path: "/title", value: "Green" }, "renamed the title to “Green”"],
      [{ op: "remove", path: "/steps/3" }, "removed step 4 “Debrief”"],
      [{ op: "replace", path: "/difficulty", value: "hard" }, "changed the difficulty to “hard”"],
      [{ op: "replace", path: "/steps/1/title" }, "renamed step 2 “Evacuate”"],
      [{ op: "replace", path: "/steps/1/description" }, "changed the description of step 2 “Evacuate”"],
      [{ op: "add", path: "/objectives/1", value: "Count everyone" }, "added objective Count everyone"],
      [{ op: "add", path: "/duration_minutes" }, "added the duration minutes"],
      [{ op: "replace", path: "" }, "replaced the whole scenario"],
    ];
    for (const [change, words] of cases) assert.equal(describeChange(change, { before, after }), words, JSON.stringify(change));
    assert.ok(!describeChange({ op: "add", path: "/roles/2" }, { before, after }).includes("#"));
  });

  test("a list of changes", () => {
    const list = Array.from({ length: 8 }, (_, i) => ({ op: "replace", path: `/steps/${i}/title`, text: `t${i}` }));
    assert.equal(describeChanges(list), "t0, t1, t2, t3, t4, t5, and 2 more");
    assert.equal(describeChanges([]), "");
  });
});

describe("resolveChangePaths", () => {
  test("'-' becomes the index the item landed at, in order", () => {
    const before = doc();
    const changes = [
      { op: "add", path: "/roles/-", text: "added role Journalist" },
      { op: "add", path: "/roles/-" },
      { op: "replace", path: "/title" },
      { op: "add", path: "/objectives/-" },
    ];
    assert.deepEqual(resolveChangePaths(changes, before).map((c) => c.path), ["/roles/2", "/roles/3", "/title", "/objectives/1"]);
    assert.equal(resolveChangePaths(changes, before)[0].text, "added role Journalist");
    assert.deepEqual(resolveChangePaths(null, before), []);
  });
});

describe("versionRelation: edits of one another, or different scenarios", () => {
  const sample = {
    title: "Code Dark: Ransomware at Riverside General Hospital",
    summary: "Hospital leadership responds to a ransomware attack.",
    difficulty: "advanced",
    setting: "Riverside General, a 420-bed hospital.",
    roles: [
      { name: "Incident Commander", description: "Leads the response." },
      { name: "CISO", description: "Owns containment." },
      { name: "Chief Nursing Officer", description: "Patient safety." },
    ],
    steps: [
      { title: "Alarm", description: "The EHR is down." },
      { title: "Ransom note", description: "A note appears." },
      { title: "Decide", description: "Pay or not." },
    ],
    objectives: ["Keep patients safe", "Contain the attack", "Communicate"],
  };
  const created = {
    title: "Fire Drill at Lakeside School",
    summary: "Staff evacuate 600 pupils during a fire alarm.",
    difficulty: "beginner",
    setting: "Lakeside primary school, lunchtime.",
    roles: [{ name: "Head Teacher", description: "Leads." }, { name: "Fire Warden", description: "Sweeps floors." }],
    steps: [{ title: "Alarm", description: "The bell rings." }, { title: "Roll call", description: "Count everyone." }],
    objectives: ["Everyone out in 4 minutes"],
  };

  test("a rename, an added role, a harder version: edits", () => {
    const renamed = { ...sample, title: "Blue Harbor Drill" };
    assert.equal(versionRelation(sample, renamed).relation, "edit");
    const more = { ...renamed, roles: [...sample.roles, { name: "Journalist", description: "Calls." }] };
    assert.equal(versionRelation(sample, more).relation, "edit");
    const harder = { ...sample, difficulty: "expert", steps: sample.steps.map((s) => ({ ...s, description: s.description + " Under time pressure." })) };
    assert.equal(versionRelation(sample, harder).relation, "edit", "same title: an edit however much changed");
  });

  test("a Create after a sample: different scenarios, both ways", () => {
    const r = versionRelation(sample, created);
    assert.equal(r.relation, "different");
    assert.ok(r.shared < 0.2, `shared ${r.shared}`);
    assert.equal(versionRelation(created, sample).relation, "different");
    assert.equal(versionRelation(null, created).relation, "different");
  });

  test("the one line and the short title", () => {
    assert.equal(differentScenarioLine("back", sample, 3), "Back to “Code Dark: Ransomware at…” (version 3), a different scenario.");
    assert.equal(differentScenarioLine("forward", created, 4), "Forward to “Fire Drill at Lakeside School” (version 4), a different scenario.");
    assert.equal(shortTitle(""), "(untitled)");
    assert.equal(shortTitle("Short"), "Short");
  });
});
