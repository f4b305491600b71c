// Asks before a form marked data-confirm="question" is submitted (no inline handlers: the pages' CSP forbids them).
(function () {
  "use strict";
  document.addEventListener("submit", function (ev) {
    const question = ev.target.dataset && ev.target.dataset.confirm;
    if (question && !window.confirm(question)) ev.preventDefault();
  });
})();
