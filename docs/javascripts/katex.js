// Renders the equations that pymdownx.arithmatex marks (\( \) inline, \[ \] display) with the KaTeX the site ships
// in docs/assets/katex/ (0.16.47, MIT, from the npm registry): no page needs the network to show them.
document$.subscribe(() => {
  renderMathInElement(document.body, {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
