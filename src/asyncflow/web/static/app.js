// Progressive enhancement: a page showing something still running refreshes
// its content every 2 s (the same URL, fetched), and stops once nothing runs.
// Without JavaScript the page is complete as served; reload to update it.
(function () {
  "use strict";
  var main = document.querySelector("main");
  if (!main || !main.hasAttribute("data-live") || !window.fetch || !window.DOMParser) {
    return;
  }
  var timer = window.setInterval(refresh, 2000);

  function refresh() {
    window.fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (!next) { return; }
        // Keep open what the reader opened (tracebacks).
        var opened = Array.prototype.map.call(
          main.querySelectorAll("details[open][id]"), function (d) { return d.id; });
        main.replaceWith(next);
        main = next;
        opened.forEach(function (id) {
          var details = document.getElementById(id);
          if (details) { details.open = true; }
        });
        if (!next.hasAttribute("data-live")) { window.clearInterval(timer); }
      })
      .catch(function () { /* the next tick tries again */ });
  }
})();
