// The chat panel's front-end, an anywidget ES module (oxen_notebook/_panel/_front.py).
//
// role "panel": the multi-line message box, one Send/Stop button, a note next to the box, and
// buttons around the panel's code blocks and messages. role "code": under a %%oxen reply, the
// Copy / Insert buttons for the code blocks of the widget's own output area.
//
// Every piece of HTML this module finds was sanitized in Python. It only adds controls around it:
// it reads text with textContent, never renders model text, never evaluates anything from it.

const WIDGET_MIME = "application/vnd.jupyter.widget-view+json";
const MAX_BOX_HEIGHT = 240; // px: the box grows with its text up to this, then scrolls

function button(label, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "oxen-tool-button";
  b.textContent = label;
  b.title = title;
  b.addEventListener("click", (event) => {
    event.preventDefault();
    event.stopPropagation();
    onClick(b);
  });
  return b;
}

function flash(b, text) {
  const old = b.dataset.label || b.textContent;
  b.dataset.label = old;
  b.textContent = text;
  setTimeout(() => {
    b.textContent = old;
  }, 1200);
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea"); // http:// on another host: no clipboard API
  area.value = text;
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

// A code block: div.oxen-code, its header's actions slot for our buttons, and (past 40 lines)
// div.oxen-code.oxen-code-more parts after it, maybe in other widgets of the same root. Older
// HTML has no wrapper: a run of adjacent <pre>. Its code is the text of its parts' <pre>s, without
// the newline that ends the fence's last line, read at the click (a streaming block grows).
function codeBlocks(root) {
  const blocks = [];
  for (const part of root.querySelectorAll(".oxen-code:not(.oxen-code-more)")) {
    blocks.push({ anchor: part, slot: part.querySelector(".oxen-code-actions") });
  }
  for (const pre of root.querySelectorAll("pre")) {
    if (pre.closest(".oxen-code, .oxen-step")) continue;
    const prev = pre.previousElementSibling;
    if (!(prev && prev.tagName === "PRE")) blocks.push({ anchor: pre, slot: null });
  }
  return blocks;
}

function blockCode(root, anchor) {
  if (!anchor.classList.contains("oxen-code")) {
    let text = "";
    for (let pre = anchor; pre && pre.tagName === "PRE"; pre = pre.nextElementSibling) text += pre.textContent;
    return text.replace(/\n$/, "");
  }
  let text = "";
  let inside = false;
  for (const part of root.querySelectorAll(".oxen-code")) {
    if (part === anchor) inside = true;
    else if (inside && !part.classList.contains("oxen-code-more")) break;
    if (inside) part.querySelectorAll(":scope > pre").forEach((pre) => (text += pre.textContent));
  }
  return text.replace(/\n$/, "");
}

// Insert as cell: no official API reaches the notebook from a widget. Classic Notebook has
// Jupyter.notebook; JupyterLab and Notebook 7 give the widget manager the notebook's context,
// whose shared model can insert a cell. Elsewhere (VS Code, Colab) there is no route: null.
function insertRoute(model, el) {
  const classic = globalThis.Jupyter && globalThis.Jupyter.notebook;
  if (classic && typeof classic.insert_cell_below === "function") {
    return (code) => {
      const cells = classic.get_cells();
      let index = cells.findIndex((c) => c.element && c.element[0] && c.element[0].contains(el));
      if (index < 0) index = cells.length - 1;
      const cell = classic.insert_cell_below("code", index);
      cell.set_text(code);
      return true;
    };
  }
  const manager = model.widget_manager;
  const context = manager && manager.context;
  const shared = context && context.model && context.model.sharedModel;
  if (!shared || typeof shared.insertCell !== "function") return null;
  return (code) => {
    const anchor = model.get("anchor");
    let index = shared.cells.length;
    shared.cells.forEach((cell, i) => {
      const outputs = typeof cell.getOutputs === "function" ? cell.getOutputs() : [];
      for (const output of outputs) {
        const view = output && output.data && output.data[WIDGET_MIME];
        if (view && view.model_id === anchor) index = i + 1;
      }
    });
    shared.insertCell(index, { cell_type: "code", source: code, metadata: {} });
    return true;
  };
}

function decorateCode(root, insert) {
  for (const block of codeBlocks(root)) {
    const marked = block.slot || block.anchor;
    if (marked.dataset.oxenTools) continue;
    marked.dataset.oxenTools = "1";
    const bar = block.slot || document.createElement("div");
    bar.classList.add("oxen-code-tools");
    bar.appendChild(
      button("Copy", "Copy the code", (b) => {
        copyText(blockCode(root, block.anchor)).then(
          () => flash(b, "Copied"),
          () => flash(b, "Copy failed"),
        );
      }),
    );
    if (insert) {
      bar.appendChild(
        button("Insert as cell", "Insert the code as a new cell below", (b) => {
          flash(b, insert(blockCode(root, block.anchor)) ? "Inserted" : "Not inserted");
        }),
      );
    }
    if (!block.slot) block.anchor.parentNode.insertBefore(bar, block.anchor);
  }
}

// Copy on every message, Regenerate on the last reply, Retry on an error callout.
function decorateMessages(root, model) {
  for (const stale of root.querySelectorAll(".oxen-msg-tools")) {
    if (!stale.parentElement.matches(".oxen-msg.oxen-user, .oxen-msg.oxen-assistant")) stale.remove(); // a failed reply
  }
  const messages = [...root.querySelectorAll(".oxen-msg.oxen-user, .oxen-msg.oxen-assistant")];
  messages.forEach((message, i) => {
    let bar = message.querySelector(":scope > .oxen-msg-tools");
    const last = i === messages.length - 1 && message.classList.contains("oxen-assistant");
    if (!bar) {
      bar = document.createElement("div");
      bar.className = "oxen-msg-tools";
      bar.appendChild(
        button("Copy", "Copy the message's text", (b) => {
          const clone = message.cloneNode(true);
          const chrome = ".oxen-role, .oxen-msg-tools, div.oxen-code-tools, .oxen-code-head, .oxen-retry";
          clone.querySelectorAll(chrome).forEach((n) => n.remove()); // our labels and buttons, not the text
          copyText(clone.innerText.trim()).then(() => flash(b, "Copied"));
        }),
      );
      message.appendChild(bar);
    }
    const regenerate = bar.querySelector(".oxen-regenerate");
    if (last && !regenerate) {
      const b = button("Regenerate", "Send the last message again", () => model.send({ event: "regenerate" }));
      b.classList.add("oxen-regenerate");
      bar.appendChild(b);
    } else if (!last && regenerate) {
      regenerate.remove();
    }
  });
  for (const callout of root.querySelectorAll(".oxen-callout[data-retry]")) {
    if (callout.querySelector(".oxen-retry")) continue;
    const b = button("Retry", "Send the last message again", () => model.send({ event: "regenerate" }));
    b.classList.add("oxen-retry");
    callout.appendChild(b);
  }
}

// Finds the element to watch once the view is in the page, then decorates what appears in it.
function watch(el, find, decorate) {
  let observer = null;
  let timer = null;
  let tries = 0;
  const start = () => {
    const root = el.isConnected ? find(el) : null;
    if (!root) {
      if (tries++ < 100) timer = setTimeout(start, 50);
      return;
    }
    let pending = false;
    const run = () => {
      pending = false;
      observer.disconnect();
      decorate(root);
      observer.observe(root, { childList: true, subtree: true });
    };
    observer = new MutationObserver(() => {
      if (!pending) {
        pending = true;
        requestAnimationFrame(run);
      }
    });
    run();
  };
  start();
  return () => {
    clearTimeout(timer);
    if (observer) observer.disconnect();
  };
}

function stopKeys(node) {
  // The notebook must not see these keys: Shift+Enter would run the cell, and letters in command
  // mode edit the notebook (d d deletes a cell). JupyterLab listens on the document while keys
  // bubble, Notebook 7 while they are captured: there only Lumino's attribute keeps them away.
  node.setAttribute("data-lm-suppress-shortcuts", "true");
  for (const type of ["keydown", "keypress", "keyup"]) {
    node.addEventListener(type, (event) => event.stopPropagation());
  }
}

function messageBox(model, el) {
  const row = document.createElement("div");
  row.className = "oxen-compose";
  const box = document.createElement("textarea");
  box.className = "oxen-box";
  box.rows = 1;
  box.placeholder = model.get("placeholder");
  const action = document.createElement("button");
  action.type = "button";
  action.className = "oxen-action";
  const note = document.createElement("div");
  note.className = "oxen-box-note";
  note.setAttribute("role", "status");
  let localNote = "";

  const grow = () => {
    box.style.height = "auto";
    box.style.height = `${Math.min(box.scrollHeight + 2, MAX_BOX_HEIGHT)}px`;
  };
  const showNote = () => {
    note.textContent = localNote || model.get("note");
    note.style.display = note.textContent ? "" : "none";
  };
  const showBusy = () => {
    const busy = model.get("busy");
    action.textContent = busy ? "Stop" : "Send";
    action.title = busy ? "Stop the reply" : "Send (Enter)";
    action.classList.toggle("oxen-stop", busy);
    localNote = ""; // a note about the old state goes when the state changes
    showNote();
  };
  const send = () => {
    const text = box.value;
    if (model.get("busy")) {
      localNote = "A reply is streaming: press Stop, or wait. Your text stays here.";
      showNote();
      return;
    }
    if (!text.trim()) {
      localNote = "Type a message first.";
      showNote();
      return;
    }
    localNote = "";
    showNote();
    model.send({ event: "send", text }); // the text goes in the message: nothing waits for a sync
    box.value = "";
    grow();
  };

  stopKeys(box);
  box.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing) return;
    event.preventDefault();
    if (event.shiftKey) {
      // The newline is ours to insert: JupyterLab cancels a line break typed inside a cell.
      box.setRangeText("\n", box.selectionStart, box.selectionEnd, "end");
      grow();
    } else {
      send();
    }
  });
  box.addEventListener("input", () => {
    if (localNote) {
      localNote = "";
      showNote();
    }
    grow();
  });
  action.addEventListener("click", () => {
    if (model.get("busy")) model.send({ event: "stop" });
    else send();
  });
  const onMessage = (content) => {
    if (content && content.event === "refused" && typeof content.text === "string") {
      // The kernel was busy after all: the text comes back to the box.
      box.value = box.value ? `${content.text}\n${box.value}` : content.text;
      grow();
    }
  };
  model.on("change:busy", showBusy);
  model.on("change:note", showNote);
  model.on("msg:custom", onMessage);
  row.append(box, action);
  el.append(row, note);
  showBusy();
  return () => {
    model.off("change:busy", showBusy);
    model.off("change:note", showNote);
    model.off("msg:custom", onMessage);
  };
}

function render({ model, el }) {
  const role = model.get("role");
  el.classList.add("oxen-front", `oxen-front-${role}`);
  const cleanups = [];
  const insert = insertRoute(model, el);
  if (role === "panel") {
    cleanups.push(messageBox(model, el));
    cleanups.push(
      watch(
        el,
        (node) => {
          const panel = node.closest(".oxen-panel");
          return panel && panel.querySelector(".oxen-transcript");
        },
        (root) => {
          decorateCode(root, insert);
          decorateMessages(root, model);
        },
      ),
    );
  } else {
    const area = (node) => node.closest(".jp-OutputArea, .output, .output_wrapper, .cell-output-ipywidget-background");
    cleanups.push(watch(el, area, (root) => decorateCode(root, insert)));
  }
  model.send({ event: "ready", insert: Boolean(insert) });
  return () => cleanups.forEach((cleanup) => cleanup());
}

export default { render };
