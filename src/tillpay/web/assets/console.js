// tillpay console: small progressive enhancements. Every page works without this file.
// Served at a content-hashed URL, loaded with the page's CSP nonce. No dependencies.
(function () {
  "use strict";

  // Live updates: pages that want them carry <div data-live-ticket-url="…"> (and
  // data-live-channel="admin" for an administrator's deployment-wide events). The script
  // asks that console route for a single-use socket ticket (a same-origin POST with the
  // CSRF token), opens the realtime WebSocket with it, and reloads the page's live panels
  // when a payment or refund event arrives.
  var live = document.querySelector("[data-live-ticket-url]");
  if (!live || !window.WebSocket || !window.fetch) return;

  var status = document.querySelector("[data-live-status]");
  var reloadTimer = null;

  function setStatus(on, text) {
    if (!status) return;
    status.classList.toggle("live-on", on);
    var label = status.querySelector("[data-live-label]");
    if (label) label.textContent = text;
  }

  function refreshPanels() {
    // Debounced: a burst of events causes one fetch of the page, not one per event.
    if (reloadTimer) return;
    reloadTimer = setTimeout(function () {
      reloadTimer = null;
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-live-panel]").forEach(function (panel) {
            var fresh = doc.querySelector('[data-live-panel="' + panel.getAttribute("data-live-panel") + '"]');
            if (fresh) panel.replaceWith(document.importNode(fresh, true));
          });
        })
        .catch(function () { /* the next event tries again */ });
    }, 800);
  }

  var attempts = 0;
  function connect() {
    var form = new FormData();
    form.append("csrf_token", live.getAttribute("data-csrf") || "");
    fetch(live.getAttribute("data-live-ticket-url"), { method: "POST", body: form, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("ticket " + r.status); return r.json(); })
      .then(function (body) {
        var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
        var socket = new WebSocket(scheme + "//" + window.location.host + body.path);
        socket.addEventListener("open", function () {
          socket.send(JSON.stringify({ type: "auth", ticket: body.ticket }));
        });
        socket.addEventListener("message", function (message) {
          var data;
          try { data = JSON.parse(message.data); } catch (e) { return; }
          var channel = live.getAttribute("data-live-channel");
          if (data.type === "ready" && channel) socket.send(JSON.stringify({ type: "subscribe", channel: channel }));
          if ((data.type === "ready" && !channel) || data.type === "subscribed") { attempts = 0; setStatus(true, "Live"); }
          if (data.type === "error" && data.code === "admin_2fa_required") setStatus(false, "Live updates need 2FA");
          var type = data.event && data.event.type;
          if (data.type === "event" && /^(payment|refund)\./.test(type || "")) refreshPanels();
        });
        socket.addEventListener("close", function () {
          setStatus(false, "Offline");
          attempts += 1;
          if (attempts < 6) setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, attempts)));
        });
      })
      .catch(function () { setStatus(false, "Offline"); });
  }
  connect();
})();
