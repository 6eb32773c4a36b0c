// The inbox badge and list, kept current over the WebSocket /ws/inbox/.
//
// A push is a hint: on "new" (and on every (re)connect) the page asks
// /inbox/api/since/?after=<last id shown> for what it has not shown, so a push
// lost while disconnected loses nothing and a repeated one shows nothing
// twice. Without a WebSocket the page still works by reloading.
(function () {
  "use strict";
  var badge = document.querySelector("[data-inbox-badge]");
  if (!badge || window.__cmmsInbox) return;
  window.__cmmsInbox = true;
  var list = document.getElementById("inbox-list");
  var status = document.querySelector("[data-live-status]");
  var lastId = parseInt(badge.dataset.lastId || "0", 10) || 0;
  var delay = 1000;
  var fetching = false;
  var again = false;

  function setCount(n) {
    badge.querySelectorAll("[data-unread-count]").forEach(function (el) { el.textContent = String(n); });
    badge.classList.toggle("has-unread", n > 0);
  }

  function setLive(on) {
    document.documentElement.dataset.inboxLive = on ? "1" : "0";
    if (status) status.textContent = on ? "●" : "○";
  }

  function wanted(item) {
    if (!list || list.dataset.live !== "1") return false;
    var type = list.dataset.filterType || "";
    return !type || type === item.message_type;
  }

  function insert(item) {
    if (list.querySelector('[data-note-id="' + item.id + '"]')) return;
    var holder = document.createElement("template");
    holder.innerHTML = item.html.trim();
    list.insertBefore(holder.content.firstElementChild, list.firstChild);
    var empty = document.querySelector("[data-inbox-empty]");
    if (empty) empty.remove();
  }

  function catchUp() {
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(badge.dataset.sinceUrl + "?after=" + lastId, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      data.items.forEach(function (item) {
        if (item.id <= lastId) return;
        lastId = item.id;
        if (wanted(item)) insert(item);
      });
      setCount(data.unread);
      if (data.more) again = true;
    }).catch(function () { /* the next push or reconnect tries again */ })
      .finally(function () {
        fetching = false;
        if (again) { again = false; catchUp(); }
      });
  }

  function markRead(ids, all) {
    if (!list) return;
    var rows = all ? list.querySelectorAll(".note.unread")
      : ids.map(function (id) { return list.querySelector('[data-note-id="' + id + '"]'); });
    rows.forEach(function (row) {
      if (!row) return;
      row.classList.remove("unread");
      row.classList.add("read-now");
      var form = row.querySelector(".note-read-form");
      if (form) form.remove();
    });
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try {
      socket = new WebSocket(scheme + location.host + badge.dataset.wsPath);
    } catch (e) {
      return; // WebSocket blocked: the page works by reloading
    }
    socket.onopen = function () { delay = 1000; setLive(true); catchUp(); };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "new") catchUp();
      else if (message.type === "read") {
        markRead(message.ids || [], message.all);
        if (message.unread !== null && message.unread !== undefined) setCount(message.unread);
      }
    };
    socket.onclose = function (event) {
      setLive(false);
      if (event.code === 4401) return; // logged out: reconnecting cannot help
      // Back off (1 s doubling to 30 s, with jitter) so a restarted server is
      // not hit by every page at once.
      setTimeout(connect, delay + Math.random() * delay / 2);
      delay = Math.min(delay * 2, 30000);
    };
  }

  // Mark read without leaving the page; a failed request falls back to the form.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("[data-inbox-action]")) return;
    event.preventDefault();
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      markRead(data.ids, data.all || form.classList.contains("mark-all") || !!form.querySelector(".mark-all-read"));
      setCount(data.unread);
    }).catch(function () { form.submit(); });
  });

  setLive(false);
  connect();
})();
