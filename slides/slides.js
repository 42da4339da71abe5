// Arrow keys, space, PageUp/PageDown, Home/End or a click move between slides; the URL hash keeps the slide number.
(function () {
  var slides = Array.prototype.slice.call(document.querySelectorAll("section"));
  var bar = document.getElementById("bar"), i = 0;
  function show(n) {
    i = Math.max(0, Math.min(slides.length - 1, n));
    slides.forEach(function (s, k) { s.classList.toggle("current", k === i); });
    bar.textContent = (i + 1) + " / " + slides.length + "   \u2190 \u2192 to navigate";
    history.replaceState(null, "", "#" + (i + 1));
  }
  document.body.classList.add("deck");
  document.addEventListener("keydown", function (e) {
    var k = e.key;
    if (k === "ArrowRight" || k === "ArrowDown" || k === "PageDown" || k === " ") { show(i + 1); e.preventDefault(); }
    else if (k === "ArrowLeft" || k === "ArrowUp" || k === "PageUp") { show(i - 1); e.preventDefault(); }
    else if (k === "Home") { show(0); } else if (k === "End") { show(slides.length - 1); }
  });
  document.addEventListener("click", function (e) {
    if (e.target.closest("a")) return;
    show(e.clientX > window.innerWidth / 3 ? i + 1 : i - 1);
  });
  show((parseInt(location.hash.slice(1), 10) || 1) - 1);
})();
