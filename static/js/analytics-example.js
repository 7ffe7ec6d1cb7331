// Example audience-measurement tag, loaded only when the visitor consented to
// "analytics" (the server never sends this <script> otherwise). Self-hosted, no third
// party: it only keeps a pseudonymous visit ID in a first-party cookie for 13 months.
(function () {
  "use strict";
  if (document.cookie.indexOf("lorchestre_analytics=") !== -1) return;
  var bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  var id = Array.prototype.map.call(bytes, function (b) {
    return ("0" + b.toString(16)).slice(-2);
  }).join("");
  var secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "lorchestre_analytics=" + id + "; Max-Age=" + 60 * 60 * 24 * 395 +
    "; Path=/; SameSite=Lax" + secure;
})();
