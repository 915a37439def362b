// Copy buttons of the Remote UI (no inline script: the CSP forbids it).
// Copy buttons: the text of the element named by data-copy goes to the clipboard.
document.querySelectorAll('button[data-copy]').forEach(function (b) {
  b.hidden = false;
  b.addEventListener('click', function () {
    var el = document.getElementById(b.getAttribute('data-copy'));
    if (el && navigator.clipboard) {
      navigator.clipboard.writeText(el.innerText).then(function () {
        b.textContent = b.getAttribute('data-done');
      });
    }
  });
});
