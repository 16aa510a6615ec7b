// Home page: administrators see a prompt to run onboarding until it is finished or skipped.
"use strict";

(function () {
  const prompt = document.getElementById("onboarding-prompt");
  if (!prompt) return;
  window.ST.api("GET", "/api/onboarding").then((result) => {
    if (result.ok && !result.data.done) prompt.hidden = false;
  });
})();
