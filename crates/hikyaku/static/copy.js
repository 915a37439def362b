// Copy buttons and file pickers of the Remote UI (no inline script: the CSP forbids it).
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
// A chosen file's text goes into the text area named by data-into (PEM
// certificates), so that the form sends it as if it had been pasted.
document.querySelectorAll('input[type=file][data-into]').forEach(function (input) {
  input.addEventListener('change', function () {
    var file = input.files && input.files[0];
    var target = document.getElementById(input.getAttribute('data-into'));
    if (!file || !target) { return; }
    file.text().then(function (text) { target.value = text; });
  });
});
