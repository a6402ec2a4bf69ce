// A small Python editor: a <textarea> for input with a highlighted <pre> underneath, kept in
// sync on every change and scroll. The tokenizer is a single left-to-right scan; it colours
// keywords, builtins, strings (all prefixes, triple quotes), numbers, comments, decorators and
// the names after `def` / `class`. No libraries, nothing loaded from elsewhere.
"use strict";

(function () {
  const KEYWORDS = new Set([
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
    "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
    "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
    "try", "while", "with", "yield",
  ]);
  const CONSTANTS = new Set(["False", "None", "True"]);
  const BUILTINS = new Set([
    "abs", "all", "any", "ascii", "bin", "bool", "breakpoint", "bytearray", "bytes", "callable",
    "chr", "classmethod", "compile", "complex", "delattr", "dict", "dir", "divmod", "enumerate",
    "eval", "exec", "filter", "float", "format", "frozenset", "getattr", "globals", "hasattr",
    "hash", "help", "hex", "id", "input", "int", "isinstance", "issubclass", "iter", "len",
    "list", "locals", "map", "max", "memoryview", "min", "next", "object", "oct", "open", "ord",
    "pow", "print", "property", "range", "repr", "reversed", "round", "set", "setattr", "slice",
    "sorted", "staticmethod", "str", "sum", "super", "tuple", "type", "vars", "zip", "self",
    "Exception", "ValueError", "TypeError", "KeyError", "IndexError", "RuntimeError",
    "OSError", "MemoryError", "ZeroDivisionError", "StopIteration", "KeyboardInterrupt",
  ]);

  const IDENT = /[A-Za-z_\u00C0-\uFFFF][\w\u00C0-\uFFFF]*/y;
  const NUMBER = /(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)/y;
  const STRING_PREFIX = /(?:[rR][bBfF]?|[bBfF][rR]?|[uU])?(?='|")/y;
  const DECORATOR = /@[A-Za-z_][\w.]*/y;
  const SPACE = /[ \t\f]+/y;

  function matchAt(re, src, at) {
    re.lastIndex = at;
    const m = re.exec(src);
    return m ? m[0] : null;
  }

  // The end of a string literal starting at `at` (its quote, after any prefix).
  function stringEnd(src, at) {
    const q = src[at];
    const triple = src.startsWith(q + q + q, at);
    let i = at + (triple ? 3 : 1);
    while (i < src.length) {
      const c = src[i];
      if (c === "\\") {
        i += 2; // In raw strings a backslash still protects the quote after it.
        continue;
      }
      if (triple) {
        if (src.startsWith(q + q + q, i)) return i + 3;
      } else {
        if (c === q) return i + 1;
        if (c === "\n") return i; // An unterminated single-line string stops at the line end.
      }
      i += 1;
    }
    return src.length;
  }

  // [{type, text}] covering `src` exactly. Types: kw, const, builtin, def, str, num, com, dec,
  // op, plain.
  function tokenize(src) {
    const tokens = [];
    let i = 0;
    let lineStart = true;
    let afterDef = false;
    const push = (type, text) => {
      const last = tokens[tokens.length - 1];
      if (last && last.type === type && type === "plain") last.text += text;
      else tokens.push({ type, text });
    };
    while (i < src.length) {
      const c = src[i];
      if (c === "\n") {
        push("plain", c);
        i += 1;
        lineStart = true;
        continue;
      }
      const space = matchAt(SPACE, src, i);
      if (space) {
        push("plain", space);
        i += space.length;
        continue;
      }
      if (c === "#") {
        const end = src.indexOf("\n", i);
        const text = src.slice(i, end < 0 ? src.length : end);
        push("com", text);
        i += text.length;
        continue;
      }
      const prefix = matchAt(STRING_PREFIX, src, i);
      if (prefix !== null) {
        const quoteAt = i + prefix.length;
        const end = stringEnd(src, quoteAt);
        push("str", src.slice(i, end));
        i = end;
        lineStart = false;
        afterDef = false;
        continue;
      }
      if (c === "@" && lineStart) {
        const dec = matchAt(DECORATOR, src, i);
        if (dec) {
          push("dec", dec);
          i += dec.length;
          lineStart = false;
          continue;
        }
      }
      const ident = matchAt(IDENT, src, i);
      if (ident) {
        let type = "plain";
        if (afterDef) type = "def";
        else if (CONSTANTS.has(ident)) type = "const";
        else if (KEYWORDS.has(ident)) type = "kw";
        else if (BUILTINS.has(ident)) type = "builtin";
        afterDef = ident === "def" || ident === "class";
        push(type, ident);
        i += ident.length;
        lineStart = false;
        continue;
      }
      if (/[0-9.]/.test(c)) {
        const num = matchAt(NUMBER, src, i);
        if (num) {
          push("num", num);
          i += num.length;
          lineStart = false;
          afterDef = false;
          continue;
        }
      }
      push(/[-+*/%=<>!&|^~:,;.()[\]{}]/.test(c) ? "op" : "plain", c);
      i += 1;
      lineStart = false;
      afterDef = false;
    }
    return tokens;
  }

  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function highlight(src) {
    let html = "";
    for (const token of tokenize(src)) {
      const text = escapeHtml(token.text);
      html += token.type === "plain" ? text : '<span class="tok-' + token.type + '">' + text + "</span>";
    }
    // A trailing newline needs something after it, or the <pre> is one line short of the textarea.
    return html + "\n";
  }

  // Insert text at the selection, keeping the browser's undo history when it can.
  function insertText(area, text) {
    area.focus();
    if (!document.execCommand || !document.execCommand("insertText", false, text)) {
      area.setRangeText(text, area.selectionStart, area.selectionEnd, "end");
      area.dispatchEvent(new Event("input", { bubbles: true }));
    }
  }

  const INDENT = "    ";

  function attach(area, pre, onRun) {
    let tabLeaves = false;
    const render = () => {
      pre.innerHTML = highlight(area.value);
      syncScroll();
    };
    const syncScroll = () => {
      pre.scrollTop = area.scrollTop;
      pre.scrollLeft = area.scrollLeft;
    };
    area.addEventListener("input", render);
    area.addEventListener("scroll", syncScroll);
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        onRun();
        return;
      }
      if (event.key === "Escape") {
        tabLeaves = true;
        return;
      }
      if (event.key === "Tab" && !tabLeaves && !event.ctrlKey && !event.altKey && !event.metaKey) {
        event.preventDefault();
        if (event.shiftKey) dedent(area);
        else if (area.selectionStart !== area.selectionEnd && area.value.slice(area.selectionStart, area.selectionEnd).includes("\n")) indentLines(area);
        else insertText(area, INDENT);
        return;
      }
      tabLeaves = false;
      if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.isComposing) {
        // Keep the current line's indentation; one level more after a colon.
        const before = area.value.slice(0, area.selectionStart);
        const line = before.slice(before.lastIndexOf("\n") + 1);
        let indent = line.match(/^[ \t]*/)[0];
        if (/:\s*(#.*)?$/.test(line)) indent += INDENT;
        event.preventDefault();
        insertText(area, "\n" + indent);
      }
    });
    render();
    return { render };
  }

  function selectedLines(area) {
    const value = area.value;
    const start = value.lastIndexOf("\n", area.selectionStart - 1) + 1;
    let end = value.indexOf("\n", area.selectionEnd - (area.selectionEnd > area.selectionStart ? 1 : 0));
    if (end < 0) end = value.length;
    return { start, end, text: value.slice(start, end) };
  }

  function replaceLines(area, lines, text) {
    area.setSelectionRange(lines.start, lines.end);
    insertText(area, text);
    area.setSelectionRange(lines.start, lines.start + text.length);
  }

  function indentLines(area) {
    const lines = selectedLines(area);
    replaceLines(area, lines, lines.text.replace(/^/gm, INDENT));
  }

  function dedent(area) {
    const lines = selectedLines(area);
    const text = lines.text.replace(/^( {1,4}|\t)/gm, "");
    if (text !== lines.text) replaceLines(area, lines, text);
  }

  window.SafeExecEditor = { tokenize, highlight, attach };
})();
