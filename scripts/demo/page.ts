/**
 * The demo's chat page (served at `/`): plain HTML and the browser's native `WebSocket`
 * connected to `/chat`. Messages are rendered with `textContent`, never as HTML.
 */
export const chatPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>effect-ws chat</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #log { list-style: none; padding: 0.5rem; height: 22rem; overflow-y: auto; border: 1px solid #ccc; border-radius: 6px; }
  #log li.notice { color: #777; font-style: italic; }
  #log b { margin-right: 0.4rem; }
  form { display: flex; gap: 0.5rem; margin-top: 0.5rem; }
  #text { flex: 1; padding: 0.4rem; }
  #status { color: #555; }
</style>
</head>
<body>
<h1>effect-ws chat</h1>
<p id="status">connecting…</p>
<ul id="log"></ul>
<form id="form">
  <input id="text" autocomplete="off" maxlength="2000" placeholder="Say something" disabled>
  <button id="send" disabled>Send</button>
</form>
<script>
  const log = document.getElementById("log")
  const status = document.getElementById("status")
  const text = document.getElementById("text")
  const send = document.getElementById("send")
  const add = (cls, name, line) => {
    const li = document.createElement("li")
    if (cls) li.className = cls
    if (name) { const b = document.createElement("b"); b.textContent = name; li.append(b) }
    li.append(document.createTextNode(line))
    log.append(li)
    log.scrollTop = log.scrollHeight
  }
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat")
  ws.onopen = () => { status.textContent = "connected"; text.disabled = false; send.disabled = false; text.focus() }
  ws.onmessage = (e) => {
    const ev = JSON.parse(e.data)
    if (ev.type === "message") add("", ev.name, ev.text)
    else add("notice", "", ev.name + (ev.type === "join" ? " joined" : " left") + " (" + ev.members + " here)")
  }
  ws.onclose = (e) => { status.textContent = "disconnected (" + e.code + (e.reason ? ": " + e.reason : "") + ")"; text.disabled = true; send.disabled = true }
  document.getElementById("form").onsubmit = (e) => {
    e.preventDefault()
    if (text.value.trim() !== "" && ws.readyState === WebSocket.OPEN) ws.send(text.value)
    text.value = ""
  }
</script>
</body>
</html>
`
