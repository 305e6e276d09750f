// huixin's console: the phone panel's chat. No framework and no HTML from strings: every
// text goes in with textContent, every link is checked to be http(s).
(function () {
  'use strict';
  var chat = document.getElementById('chat');
  if (!chat) { return; }
  var base = document.body.getAttribute('data-base');
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
  var from = document.getElementById('from');
  var since = 0;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function add(node) {
    chat.appendChild(node);
    chat.scrollTop = chat.scrollHeight;
  }
  function safeUrl(url) {
    return (typeof url === 'string' && /^https?:\/\//i.test(url)) ? url : null;
  }
  function bubble(text, via) {
    var b = el('div', 'bubble bot');
    if (via) { b.appendChild(el('span', 'via', via)); }
    b.appendChild(document.createTextNode(String(text)));
    add(b);
  }
  function note(text) { add(el('div', 'bubble note', text)); }
  function error(text) { add(el('div', 'bubble error', text)); }
  function cards(articles, via) {
    var box = el('div', 'news');
    (articles || []).forEach(function (a) {
      var link = el('a');
      var url = safeUrl(a.url);
      if (url) { link.href = url; link.target = '_blank'; link.rel = 'noopener noreferrer'; }
      link.appendChild(el('strong', null, a.title || '(untitled)'));
      if (a.description) { link.appendChild(el('small', null, a.description)); }
      box.appendChild(link);
    });
    if (via) { box.insertBefore(el('span', 'via', via), box.firstChild); }
    add(box);
  }
  function showReply(reply, via) {
    var body = reply.body || {};
    switch (reply.type) {
      case 'text': bubble(body.content, via); break;
      case 'news': cards(reply.body, via); break;
      case 'image': bubble('[image ' + body.media_id + ']', via); break;
      case 'voice': bubble('[voice ' + body.media_id + ']', via); break;
      case 'video': bubble('[video ' + (body.title || body.media_id) + ']', via); break;
      case 'music': bubble('[music ' + (body.title || body.music_url) + ']', via); break;
      case 'transfer_customer_service': note('handed to customer service'); break;
      case 'success': note('no reply'); break;
      default: bubble('[' + reply.type + ']', via);
    }
  }
  function userSaw(saw) {
    if (!saw) { note('no answer'); return; }
    if (saw.kind === 'reply') { showReply(saw.reply); }
    else if (saw.kind === 'error_notice') { error(saw.text); }
    else { note('no reply'); }
  }
  function showDelivered(item) {
    var body = item.body || {};
    if (item.kind === 'template') {
      var box = el('div', 'template');
      box.appendChild(el('span', 'via', 'template message'));
      var dl = el('dl');
      var data = body.data || {};
      Object.keys(data).forEach(function (k) {
        dl.appendChild(el('dt', null, k));
        dl.appendChild(el('dd', null, data[k] && data[k].value));
      });
      box.appendChild(dl);
      var url = safeUrl(body.url);
      if (url) {
        var link = el('a', null, 'Details');
        link.href = url; link.target = '_blank'; link.rel = 'noopener noreferrer';
        box.appendChild(link);
      }
      add(box);
      return;
    }
    var via = 'customer-service message';
    switch (body.msgtype) {
      case 'text': bubble(body.text && body.text.content, via); break;
      case 'news': cards(body.news && body.news.articles, via); break;
      default: bubble('[' + body.msgtype + ']', via);
    }
  }
  function post(path, payload, headers) {
    var h = { 'x-csrf-token': csrf };
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    return fetch(base + path, { method: 'POST', headers: h, body: payload, credentials: 'same-origin' })
      .then(function (r) {
        return r.json().catch(function () { return { error: 'HTTP ' + r.status }; })
          .then(function (j) { if (!r.ok) { throw new Error(j.error || ('HTTP ' + r.status)); } return j; });
      });
  }
  function send(message, echo) {
    add(el('div', 'bubble me', echo));
    return post('/phone/send?from=' + encodeURIComponent(from.value), JSON.stringify(message),
      { 'content-type': 'application/json' })
      .then(function (j) { userSaw(j.user_saw); })
      .catch(function (e) { error(e.message); })
      .then(poll);
  }
  function poll() {
    return fetch(base + '/phone/inbox?from=' + encodeURIComponent(from.value) + '&since=' + since,
      { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : { items: [] }; })
      .then(function (j) {
        (j.items || []).forEach(function (item) {
          if (item.seq > since) { since = item.seq; }
          showDelivered(item);
        });
      })
      .catch(function () {});
  }

  document.getElementById('composer').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var input = document.getElementById('text');
    var text = input.value;
    if (!text) { return; }
    input.value = '';
    send({ type: 'text', content: text }, text);
  });
  document.getElementById('subscribe').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var scene = document.getElementById('scene').value;
    var message = { type: 'subscribe' };
    if (scene) { message.scene = scene; }
    send(message, scene ? 'follows (scene ' + scene + ')' : 'follows');
  });
  document.getElementById('unsubscribe').addEventListener('click', function () {
    send({ type: 'unsubscribe' }, 'unfollows');
  });
  document.getElementById('location').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var lat = parseFloat(document.getElementById('lat').value);
    var lon = parseFloat(document.getElementById('lon').value);
    var label = document.getElementById('label').value;
    if (isNaN(lat) || isNaN(lon)) { error('latitude and longitude are numbers'); return; }
    send({ type: 'location', lat: lat, lon: lon, label: label }, '📍 ' + (label || (lat + ', ' + lon)));
  });
  document.getElementById('image').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var file = document.getElementById('file').files[0];
    if (!file) { error('choose an image first'); return; }
    var form = new FormData();
    form.append('file', file);
    post('/phone/upload', form)
      .then(function (j) {
        var mine = el('div', 'bubble me');
        var img = el('img');
        img.alt = file.name;
        img.src = j.path;
        mine.appendChild(img);
        add(mine);
        return post('/phone/send?from=' + encodeURIComponent(from.value),
          JSON.stringify({ type: 'image', media_id: j.media_id, pic_url: j.pic_url }),
          { 'content-type': 'application/json' });
      })
      .then(function (j) { userSaw(j.user_saw); })
      .catch(function (e) { error(e.message); })
      .then(poll);
  });
  Array.prototype.forEach.call(document.querySelectorAll('.menu-click'), function (button) {
    button.addEventListener('click', function () {
      var kind = button.getAttribute('data-type');
      var value = button.getAttribute('data-value');
      var message = kind === 'view' ? { type: 'view', url: value } : { type: 'click', key: value };
      send(message, '[menu] ' + button.textContent);
    });
  });
  from.addEventListener('change', function () { since = 0; chat.textContent = ''; poll(); });
  setInterval(poll, 1500);
  poll();
}());
