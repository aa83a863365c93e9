// Typesets the math on each page with the vendored KaTeX (docs/javascripts/katex/).
// Markdown pages: pymdownx.arithmatex (generic mode) wraps their math in \( \) and \[ \].
// Notebook pages (mkdocs-jupyter): the notebooks' Markdown cells write $ $ and $$ $$.
// document$ is mkdocs-material's page observable: it also fires after instant navigation.
document$.subscribe(({ body }) => {
  const brackets = [
    { left: "\\[", right: "\\]", display: true },
    { left: "\\(", right: "\\)", display: false },
  ];
  const dollars = [
    { left: "$$", right: "$$", display: true },
    { left: "$", right: "$", display: false },
  ];
  body.querySelectorAll(".arithmatex").forEach((element) => {
    renderMathInElement(element, { delimiters: brackets, throwOnError: false });
  });
  body.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput").forEach((element) => {
    renderMathInElement(element, { delimiters: dollars.concat(brackets), throwOnError: false });
  });
  // A notebook page's table of contents repeats its headings' $ $ math as text.
  if (body.querySelector(".jupyter-wrapper")) {
    body.querySelectorAll(".md-sidebar--secondary .md-nav__link").forEach((element) => {
      renderMathInElement(element, { delimiters: dollars, throwOnError: false });
    });
  }
});
