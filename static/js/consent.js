// Progressive enhancement of the consent banner: the plain HTML form works without
// this file; with it, choices are posted in the background and the banner closes.
(function () {
  "use strict";
  var banner = document.getElementById("consent-banner");
  if (!banner) return;
  var form = banner.querySelector("form[data-consent-form]");
  var toggle = banner.querySelector("[data-consent-customise]");
  var layer = document.getElementById("consent-customise");

  if (toggle && layer) {
    toggle.setAttribute("role", "button");
    toggle.setAttribute("aria-expanded", "false");
    toggle.addEventListener("click", function (event) {
      event.preventDefault();
      var open = banner.classList.toggle("is-customising");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) layer.querySelector("input, button").focus();
    });
  }

  form.addEventListener("submit", function (event) {
    var submitter = event.submitter;
    if (!submitter || !window.fetch || form.dataset.plain) return; // plain POST
    event.preventDefault();
    var data = new FormData(form);
    data.set("action", submitter.value);
    // form.action would be the buttons named "action", not the URL.
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok) throw new Error("consent not recorded");
      return response.json();
    }).then(function (result) {
      banner.remove();
      // Tags of newly accepted categories are rendered by the server from now on.
      if (Object.keys(result.choices).some(function (k) {
        return k !== "necessary" && result.choices[k];
      })) window.location.reload();
    }).catch(function () {
      // Fall back to the plain form, which shows the server's own answer.
      form.dataset.plain = "1";
      form.requestSubmit(submitter);
    });
  });
})();
