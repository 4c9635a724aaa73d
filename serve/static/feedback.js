// Selecting words in the answered text fills the form's corrected span (offsets in code points,
// as the API counts them). Without JavaScript the typed answer is found in the text by the server.
(function () {
  const text = document.getElementById("highlighted");
  const start = document.getElementById("correction_start");
  const end = document.getElementById("correction_end");
  const typed = document.getElementById("correction_text");
  if (!text || !start || !end || !typed) return;
  const codePoints = (s) => Array.from(s).length;
  document.addEventListener("selectionchange", function () {
    const selection = document.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return;
    const range = selection.getRangeAt(0);
    if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) return;
    const before = document.createRange();
    before.setStart(text, 0);
    before.setEnd(range.startContainer, range.startOffset);
    const first = codePoints(before.toString());
    const chosen = range.toString();
    start.value = String(first);
    end.value = String(first + codePoints(chosen));
    typed.value = chosen;
  });
  typed.addEventListener("input", function () {  // typing replaces a selection made before
    start.value = "";
    end.value = "";
  });
})();
