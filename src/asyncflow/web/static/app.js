// Progressive enhancement: a page showing something still running refreshes
// its content 2 s after its last refresh ended (the same URL, fetched), and
// stops once nothing runs. One fetch at a time: the next is scheduled only
// when the previous one has finished, so a slow server is never asked again
// before it has answered. Without JavaScript the page is complete as served;
// reload to update it.
(function () {
  "use strict";
  var PAUSE = 2000;
  var main = document.querySelector("main");
  if (!main || !main.hasAttribute("data-live") || !window.fetch || !window.DOMParser) {
    return;
  }
  window.setTimeout(refresh, PAUSE);

  function refresh() {
    var live = true;
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
        live = next.hasAttribute("data-live");
      })
      .catch(function () { /* the next refresh tries again */ })
      .then(function () {
        if (live) { window.setTimeout(refresh, PAUSE); }
      });
  }
})();
