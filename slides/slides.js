// The course's slide decks: one <section> per slide, speaker notes in <aside class="notes"> inside a slide.
// Keys: → ↓ space PageDown next · ← ↑ PageUp back · Home/End first/last · N notes under the slide · S speaker window
// (notes, timer, next slide) · P print view (every slide, one per printed page; the browser can save it as PDF).
// A click on the right two thirds moves on, on the left third back. The URL keeps the slide: deck.html#5, deck.html?print.
(function () {
  var slides = Array.prototype.slice.call(document.querySelectorAll("body > section"));
  var bar = document.getElementById("bar"), i = 0, speaker = null, started = Date.now();
  var panel = document.createElement("div");
  panel.id = "notes-panel";
  document.body.appendChild(panel);

  function notesOf(k) {
    var aside = slides[k] && slides[k].querySelector("aside.notes");
    return aside ? aside.innerHTML : "<p><i>No notes for this slide.</i></p>";
  }
  function titleOf(k) {
    var h = slides[k] && slides[k].querySelector("h1, h2");
    return h ? h.textContent : "(end of the deck)";
  }
  function clock() {
    var s = Math.floor((Date.now() - started) / 1000);
    return Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
  }
  function updateSpeaker() {
    if (!speaker || speaker.closed) { speaker = null; return; }
    var d = speaker.document;
    d.getElementById("where").textContent = "Slide " + (i + 1) + " / " + slides.length + " \u00b7 " + titleOf(i);
    d.getElementById("notes").innerHTML = notesOf(i);
    d.getElementById("next").textContent = "Next: " + (i + 1 < slides.length ? titleOf(i + 1) : "(last slide)");
  }
  function show(n) {
    i = Math.max(0, Math.min(slides.length - 1, n));
    slides.forEach(function (s, k) { s.classList.toggle("current", k === i); });
    if (bar) bar.textContent = (i + 1) + " / " + slides.length + "   \u2190 \u2192 move \u00b7 N notes \u00b7 S speaker \u00b7 P print";
    panel.innerHTML = notesOf(i);
    if (!document.body.classList.contains("print")) history.replaceState(null, "", location.pathname + location.search + "#" + (i + 1));
    updateSpeaker();
  }
  function openSpeaker() {
    // an about:blank window shares this deck's origin (also from file://), so the deck writes into it directly
    speaker = window.open("", "rl4lm-speaker", "width=760,height=560");
    if (!speaker) return;
    var d = speaker.document;
    d.title = "Speaker notes \u00b7 " + document.title;
    d.body.innerHTML = '<div id="where"></div><div id="clock"></div><div id="notes"></div><div id="next"></div>';
    var style = d.createElement("style");
    style.textContent = "body{font:20px/1.45 'Segoe UI',Arial,sans-serif;margin:24px;color:#1f2933}#where{font-weight:bold;color:#2b6cb0}" +
      "#clock{float:right;margin-top:-1.4em;color:#5f6b7a}#notes{margin:1em 0;font-size:1.1em}#next{color:#5f6b7a;border-top:1px solid #d5dde6;padding-top:.5em}";
    d.head.appendChild(style);
    d.addEventListener("keydown", onKey);
    setInterval(function () { if (speaker && !speaker.closed) speaker.document.getElementById("clock").textContent = clock(); }, 1000);
    updateSpeaker();
  }
  function setPrint(on) {
    document.body.classList.toggle("print", on);
    document.body.classList.toggle("deck", !on);
    if (on) history.replaceState(null, "", location.pathname + "?print");
    else show(i);
  }
  function onKey(e) {
    var k = e.key;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (k === "ArrowRight" || k === "ArrowDown" || k === "PageDown" || k === " ") { show(i + 1); e.preventDefault(); }
    else if (k === "ArrowLeft" || k === "ArrowUp" || k === "PageUp") { show(i - 1); e.preventDefault(); }
    else if (k === "Home") { show(0); } else if (k === "End") { show(slides.length - 1); }
    else if (k === "n" || k === "N") { document.body.classList.toggle("notes"); }
    else if (k === "s" || k === "S") { openSpeaker(); }
    else if (k === "p" || k === "P") { setPrint(!document.body.classList.contains("print")); }
  }
  document.addEventListener("keydown", onKey);
  document.addEventListener("click", function (e) {
    if (e.target.closest("a") || document.body.classList.contains("print")) return;
    show(e.clientX > window.innerWidth / 3 ? i + 1 : i - 1);
  });
  var params = new URLSearchParams(location.search);
  if (params.has("notes")) document.body.classList.add("notes");
  show((parseInt(location.hash.slice(1), 10) || 1) - 1);
  setPrint(params.has("print"));
})();
