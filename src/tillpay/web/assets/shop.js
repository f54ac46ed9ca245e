// tillpay demo shop: small progressive enhancements. Every page works without this file.
// Served at a content-hashed URL, loaded with the page's CSP nonce. No dependencies.
(function () {
  "use strict";

  // "Continue to payment" on another origin: follow the link at once (a click without JS).
  var follow = document.querySelector("[data-follow-link]");
  if (follow) {
    var link = document.getElementById(follow.getAttribute("data-follow-link"));
    if (link) window.location.assign(link.href);
  }

  // Live order status: while the order waits for payment, ask the small status endpoint
  // every few seconds; when it changes (the provider's webhook landed), re-read the page
  // once and swap its live panel in place, without a reload.
  var root = document.querySelector("[data-live-status-url][data-live-watch]");
  if (!root || !window.fetch || !window.DOMParser) return;
  var url = root.getAttribute("data-live-status-url");
  var state = root.getAttribute("data-live-state");
  var started = Date.now();
  var LIMIT = 15 * 60 * 1000; // a page left open stops asking after 15 minutes

  function refresh() {
    return fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-live-status-url]");
        var panel = root.querySelector("[data-live-panel]");
        var freshPanel = fresh && fresh.querySelector("[data-live-panel]");
        if (!panel || !freshPanel) return;
        panel.replaceWith(document.importNode(freshPanel, true));
        state = fresh.getAttribute("data-live-state");
        root.setAttribute("data-live-state", state);
        if (!fresh.hasAttribute("data-live-watch")) root.removeAttribute("data-live-watch");
      });
  }

  function poll() {
    if (!root.hasAttribute("data-live-watch") || Date.now() - started > LIMIT) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (body && body.state && body.state !== state) return refresh();
      })
      .catch(function () { /* offline for a moment: the next round tries again */ })
      .then(function () { setTimeout(poll, document.hidden ? 10000 : 2500); });
  }
  setTimeout(poll, 2500);
})();
