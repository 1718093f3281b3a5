// shenpi UI helpers. Plain JavaScript, no build step; every page works without it.
(function () {
  "use strict";
  // Workflow editor: clicking a diagnostic puts the cursor on its line in the YAML.
  var yaml = document.getElementById("yaml");
  document.querySelectorAll("li.diag a.goto").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      if (!yaml) return;
      var li = a.closest("li.diag");
      var line = parseInt(li.getAttribute("data-line"), 10) || 1;
      var col = parseInt(li.getAttribute("data-col"), 10) || 1;
      var lines = yaml.value.split("\n");
      var pos = 0;
      for (var i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
      pos += Math.max(0, col - 1);
      yaml.focus();
      yaml.setSelectionRange(pos, pos + ((lines[line - 1] || "").length - col + 1));
      var lh = parseFloat(getComputedStyle(yaml).lineHeight) || 18;
      yaml.scrollTop = Math.max(0, (line - 5) * lh);
    });
  });
  // Destructive actions (驳回, 退回补正, 撤回, 挂牌督办) ask first: a button with data-confirm
  // submits only once the user says yes.
  document.querySelectorAll("button[data-confirm]").forEach(function (b) {
    b.addEventListener("click", function (ev) {
      if (!window.confirm(b.getAttribute("data-confirm"))) {
        ev.preventDefault();
        ev.stopImmediatePropagation();
      }
    });
  });
  // 常用意见: a phrase button puts its text into the opinion of its form.
  document.querySelectorAll("button.phrase").forEach(function (b) {
    b.addEventListener("click", function () {
      var f = b.closest("form");
      var t = f && f.querySelector("textarea");
      if (!t) return;
      var p = b.getAttribute("data-phrase");
      t.value = t.value ? t.value.replace(/\s*$/, "") + "\n" + p : p;
      t.focus();
    });
  });
  // Every action form: disable its buttons once submitted (the idempotency key makes a second
  // submission harmless anyway; this just tells the user it is on its way).
  document.querySelectorAll("form[method=post]").forEach(function (f) {
    f.addEventListener("submit", function () {
      setTimeout(function () {
        f.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
  // Material files (办件材料): drag and drop onto the upload form, and a progress bar while
  // the files are sent; without script the form posts as it is.
  document.querySelectorAll('form.upload').forEach(function (f) {
    var input = f.querySelector('input[type=file]'), bar = f.querySelector('progress');
    f.addEventListener('dragover', function (e) { e.preventDefault(); f.classList.add('over'); });
    f.addEventListener('dragleave', function () { f.classList.remove('over'); });
    f.addEventListener('drop', function (e) { e.preventDefault(); f.classList.remove('over'); input.files = e.dataTransfer.files; });
    f.addEventListener('submit', function (e) {
      e.preventDefault();
      var x = new XMLHttpRequest();
      x.open('POST', f.action);
      bar.hidden = false;
      x.upload.onprogress = function (p) { if (p.lengthComputable) bar.value = 100 * p.loaded / p.total; };
      x.onload = function () { document.open(); document.write(x.responseText); document.close(); if (x.responseURL) history.replaceState(null, '', x.responseURL); };
      x.onerror = function () { bar.hidden = true; alert('上传失败：网络中断，请重试。'); };
      x.send(new FormData(f));
    });
  });
  // 打印 (the dossier): the browser's print dialog, with the print stylesheet.
  document.querySelectorAll('button[data-print]').forEach(function (b) {
    b.addEventListener('click', function () { window.print(); });
  });
})();
