"""Bounds on the page's main-thread work in Chromium, for input a hostile model could write.

- Markdown: 16 k characters of text made to defeat a naive parser, streamed in 8-character
  tokens through the page's renderer, cost under 500 ms in all, and the result equals one
  render of the whole text (also for random chunkings, and when only the idle timer catches up).
- JSON Patch: any patch block within 64 KiB, applied as the page applies `scenario_patch`
  previews (the reducer), costs under 200 ms and never grows the preview past 64 KiB.

Main-thread time is performance.now() around the calls inside the page, plus one forced
layout of what they built.
"""

from __future__ import annotations

from typing import Any

# The same patterns as tests/js/markdown.test.mjs (ADVERSARIAL).
PATTERNS = {
    "emphasis": "*a ",
    "underscore": "_a ",
    "strong": "**a ",
    "closedEmphasis": "*a* ",
    "mixedDelimiters": "*a _b **c __d ",
    "backticks": "` `` ``` ",
    "links": "[a](",
    "closedLinks": "[a](https://x.y) ",
    "brackets": "[[",
    "nestedLists": "- a\n  - b\n  continued *c\n",
    "quotes": "> > a *b\n",
    "headingTabs": "# a \t",
    "fenceInfo": "```a`",
    "paragraphLines": "a *b\nc _d\n",
}

STREAM_MARKDOWN = """async ({patterns, size, pieceSize}) => {
    const { createMarkdownView } = await import('/markdown-view.js');
    const repeat = (p, n) => p.repeat(Math.ceil(n / p.length)).slice(0, n);
    const host = document.getElementById('transcript');
    const out = {};
    for (const [name, pattern] of Object.entries(patterns)) {
        const text = repeat(pattern, size);
        const box = document.createElement('div');
        box.className = 'msg-text';
        host.appendChild(box);
        const caret = document.createElement('span');
        caret.className = 'caret';
        const view = createMarkdownView(box);
        view.caret(caret);
        let ms = 0;
        let worst = 0;
        let finished = true;
        for (let i = 0; i < text.length; i += pieceSize) {
            const t0 = performance.now();
            view.append(text.slice(i, i + pieceSize));
            const took = performance.now() - t0;
            ms += took;
            worst = Math.max(worst, took);
            if (ms > 5000) { finished = false; break; }  // a quadratic renderer takes minutes
        }
        const t0 = performance.now();
        view.caret(null);  // the end of the stream: the renderer catches up
        box.offsetHeight;  // and the page lays out what it built
        ms += performance.now() - t0;
        const ref = document.createElement('div');
        ref.className = 'msg-text';
        host.appendChild(ref);
        createMarkdownView(ref).replace(text);
        out[name] = {ms, worst, finished, same: finished && box.innerHTML === ref.innerHTML, nodes: box.getElementsByTagName('*').length};
        box.remove();
        ref.remove();
    }
    return out;
}"""


def test_adversarial_markdown_streams_in_linear_time(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    # A first, small pass compiles the code paths, as a page that has rendered answers has.
    page.evaluate(STREAM_MARKDOWN, {"patterns": PATTERNS, "size": 2000, "pieceSize": 8})
    result = page.evaluate(STREAM_MARKDOWN, {"patterns": PATTERNS, "size": 16000, "pieceSize": 8})
    print("\nmarkdown, 16k characters in 8-character tokens (ms in Chromium):")
    for name, r in result.items():
        print(f"  {name:16} total {r['ms']:7.1f}  worst token {r['worst']:5.1f}  elements {r['nodes']}")
    for name, r in result.items():
        assert r["finished"], f"{name}: not finished in 5 s"
        assert r["same"], f"{name}: the streamed DOM differs from one render of the text"
        assert r["ms"] < 500, f"{name}: {r['ms']:.0f} ms"


def test_streamed_markdown_equals_one_render_for_any_chunking(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    result = page.evaluate(
        """async (patterns) => {
            const { createMarkdownView } = await import('/markdown-view.js');
            let seed = 5;
            const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
            const texts = [...Object.values(patterns).map((p) => p.repeat(Math.ceil(700 / p.length))),
                '# Title\\n\\nSome **bold** and `code` [a](https://x.y).\\n\\n- one\\n  - two\\n\\n```js\\nx = 1\\n```\\n> q\\n\\n---\\ntail *em*'];
            const bad = [];
            for (const text of texts) {
                const ref = document.createElement('div');
                createMarkdownView(ref).replace(text);
                for (let trial = 0; trial < 12; trial++) {
                    // Small thresholds send short texts down the deferred path as well.
                    const options = trial % 3 ? {eager: 1 + Math.floor(rand() * 64), catchUp: 1 + Math.floor(rand() * 8)} : undefined;
                    const box = document.createElement('div');
                    const view = createMarkdownView(box, options);
                    let at = 0;
                    while (at < text.length) {
                        const n = 1 + Math.floor(rand() * 24);
                        view.append(text.slice(at, at + n));
                        at += n;
                        // Between re-parses the text is all there, the deferred part as typed.
                        if (!box.textContent.replace(/\\s/g, '').length && at > 50) bad.push(['empty', text.slice(0, 20)]);
                    }
                    view.flush();
                    if (box.innerHTML !== ref.innerHTML) bad.push([text.slice(0, 20), JSON.stringify(options)]);
                }
            }
            // Left alone, the idle timer brings a deferred block up to date.
            const box = document.createElement('div');
            const view = createMarkdownView(box, {eager: 4, catchUp: 1});
            const text = 'a **b** c '.repeat(30);
            for (let i = 0; i < text.length; i += 5) view.append(text.slice(i, i + 5));
            const before = box.querySelectorAll('strong').length;
            await new Promise((r) => setTimeout(r, 600));
            const ref = document.createElement('div');
            createMarkdownView(ref).replace(text);
            return {bad, before, after: box.querySelectorAll('strong').length, idleSame: box.innerHTML === ref.innerHTML, deferred: view.stats.deferred};
        }""",
        PATTERNS,
    )
    assert result["bad"] == []
    assert result["deferred"] > 0 and result["before"] < 30
    assert result["idleSame"] and result["after"] == 30


APPLY_PATCHES = """async () => {
    const { reduce, initialState } = await import('/reducer.js');
    const { jsonBytes, MAX_SCENARIO_BYTES } = await import('/json-patch.js');
    const scenario = () => ({
        title: 'Blue Harbor', difficulty: 'medium', summary: 'A flood drill: résumé, 日本語, 🚢.',
        roles: [{name: 'Commander', description: 'Leads'}, {name: 'Scribe', description: 'Logs'}],
        steps: [{title: 'Alarm'}, {title: 'Evacuate'}], objectives: ['Be quick'],
    });
    const wide = () => ({...scenario(), numbers: Array.from({length: 9000}, (_, i) => i % 10), notes: 'n'.repeat(20000)});
    // As many operations as a 64 KiB patch block holds.
    const block = (make) => {
        const ops = [];
        let size = 2;
        for (;;) {
            const op = make(ops.length);
            size += JSON.stringify(op).length + 1;
            if (size > MAX_SCENARIO_BYTES) return ops;
            ops.push(op);
        }
    };
    const blocks = {
        doubling: [scenario, block(() => ({op: 'copy', from: '/roles', path: '/roles/-'}))],
        copyBigSubtree: [wide, block(() => ({op: 'copy', from: '/notes', path: '/copy'}))],
        copyIntoList: [wide, block(() => ({op: 'copy', from: '/roles/0', path: '/roles/-'}))],
        addToWideList: [wide, block((i) => ({op: 'add', path: '/numbers/0', value: i % 10}))],
        moveInWideList: [wide, block(() => ({op: 'move', from: '/numbers/0', path: '/numbers/-'}))],
        testWholeDocument: [wide, block(() => ({op: 'test', path: '', value: 0}))],
        addBigValues: [scenario, block((i) => ({op: 'add', path: `/k${i}`, value: 'v'.repeat(60)}))],
    };
    const out = {};
    for (const [name, [base, ops]] of Object.entries(blocks)) {
        let state = initialState({scenario: base()});
        let over = false;
        const t0 = performance.now();
        for (const [index, op] of ops.entries()) {
            state = reduce(state, {type: 'scenario_patch', data: {op, index}, t: index});
            if (state.preview && jsonBytes(state.preview.doc) > MAX_SCENARIO_BYTES) { over = true; break; }
        }
        const ms = performance.now() - t0;
        out[name] = {ms, ops: ops.length, over, bytes: new TextEncoder().encode(JSON.stringify(state.preview.doc)).length,
                     error: state.preview.error};
    }
    return out;
}"""


def test_any_patch_block_within_64k_applies_in_under_200ms(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    result = page.evaluate(APPLY_PATCHES)
    print("\nscenario_patch blocks of 64 KiB through the reducer (ms in Chromium):")
    for name, r in result.items():
        print(f"  {name:18} {r['ops']:5} ops  {r['ms']:6.1f} ms  preview {r['bytes']} bytes")
    for name, r in result.items():
        assert not r["over"], f"{name}: the preview went past 64 KiB"
        assert r["bytes"] <= 64 * 1024, name
        assert r["ms"] < 200, f"{name}: {r['ms']:.0f} ms"
    assert "over the limit" in (result["doubling"]["error"] or "")
