/* Text snippets under the hits of the book's search page.
 *
 * Sphinx (7.x) cuts each hit's snippet from the page's [role="main"] element. In this theme
 * that element begins with the article's header buttons, and Sphinx looks for the *stemmed*
 * query ("dictionari") in the text: the word is not found, and every snippet is the start of
 * the header, "....ipynb". Here the snippet comes from the article itself, around the first
 * place where a query word (as typed, or stemmed) occurs.
 */
(function () {
  "use strict";
  const CONTEXT = 120; // characters before the first match; the snippet is twice as long
  const REMOVE = [".headerlink", "script", "style", ".bd-header-article", ".prev-next-area",
                  ".bd-sidebar-secondary"];

  function typedWords() {
    const q = new URLSearchParams(window.location.search).get("q") || "";
    return q.toLowerCase().split(/\s+/).filter((w) => w.length > 1);
  }

  function articleText(htmlString, anchor) {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    REMOVE.forEach((sel) => doc.querySelectorAll(sel).forEach((el) => el.remove()));
    const article = doc.querySelector("article.bd-article") || doc.querySelector('[role="main"]');
    if (!article) return "";
    if (anchor) {
      try {
        const part = article.querySelector(anchor);
        if (part) return part.textContent;
      } catch (e) { /* not a valid selector: use the whole article */ }
    }
    return article.textContent;
  }

  function patch() {
    if (typeof Search === "undefined" || Search.courseSnippets) return;
    Search.courseSnippets = true;
    Search.htmlToText = articleText;
    Search.makeSearchSummary = (htmlText, keywords, anchor) => {
      const text = articleText(htmlText, anchor).replace(/\s+/g, " ").trim();
      if (text === "") return null;
      const lower = text.toLowerCase();
      const words = [...typedWords(), ...[...keywords].map((k) => k.toLowerCase())];
      const hits = words.map((w) => lower.indexOf(w)).filter((i) => i > -1);
      const start = hits.length ? Math.max(Math.min(...hits) - CONTEXT, 0) : 0;
      const summary = document.createElement("p");
      summary.classList.add("context");
      summary.textContent = (start > 0 ? "..." : "") + text.substr(start, 2 * CONTEXT).trim() +
        (start + 2 * CONTEXT < text.length ? "..." : "");
      return summary;
    };
  }

  // Registered before Sphinx's own DOMContentLoaded handler (searchtools.js loads later in
  // the page), so the search runs with the patched functions.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", patch);
  else patch();
})();
