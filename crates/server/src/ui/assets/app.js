// Capstan's only script: keeps the page's live region (#live) current without a
// reload. Once a second, while the tab is visible, it asks the same URL for the live
// region only (X-Capstan-Live) with the version it has (If-None-Match); the server
// answers 304 when nothing changed. Open <details> (action forms) stay open, and the
// region is not replaced while a field in it has the focus. No inline script, no eval:
// the Content-Security-Policy allows neither.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var every = parseInt(live.getAttribute("data-live") || "0", 10);
  if (!every) return;
  var etag = live.getAttribute("data-etag") || "";
  var busy = false;
  function editing() {
    var a = document.activeElement;
    return a && live.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }
  function poll() {
    if (busy || document.hidden || editing()) return;
    busy = true;
    fetch(location.href, {
      headers: { "X-Capstan-Live": "1", "If-None-Match": etag },
      credentials: "same-origin",
      cache: "no-store",
      redirect: "manual"
    }).then(function (r) {
      if (r.status === 200) {
        return r.text().then(function (html) {
          if (editing()) return;
          var open = [];
          live.querySelectorAll("details[open][id]").forEach(function (d) { open.push(d.id); });
          live.innerHTML = html;
          open.forEach(function (id) {
            var d = document.getElementById(id);
            if (d) d.open = true;
          });
          etag = r.headers.get("ETag") || "";
          live.setAttribute("data-etag", etag);
          live.setAttribute("data-updated", String(Date.now()));
        });
      } else if (r.type === "opaqueredirect" || r.status === 401) {
        location.reload(); // the session ended: the page sends to the login
      }
    }).catch(function () { /* the server is away: try again next time */ })
      .then(function () { busy = false; });
  }
  setInterval(poll, every);
})();
