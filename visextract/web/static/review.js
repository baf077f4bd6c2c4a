// The review queue's keys: a = accept, e = edit, j = next, k = previous.
"use strict";

(() => {
  const queue = document.getElementById("queue");
  if (!queue) return;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || vx.typing(event)) return;
    if (event.key === "j" && queue.dataset.older) window.location.assign(queue.dataset.older);
    else if (event.key === "k" && queue.dataset.newer) window.location.assign(queue.dataset.newer);
    else if (event.key === "a" && window.vxReview) window.vxReview.accept();
    else if (event.key === "e" && window.vxReview) {
      const first = window.vxReview.form.querySelector(".fval");
      if (first) first.focus();
    } else return;
    event.preventDefault();
  });
})();
